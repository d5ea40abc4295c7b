"""Token usage of one simulated call, rendered in each API's layout (key order as recorded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # includes reasoning_tokens, as Azure counts them
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def chat(self) -> dict[str, Any]:
        return {
            "completion_tokens": self.completion_tokens,
            "completion_tokens_details": {
                "accepted_prediction_tokens": 0,
                "audio_tokens": 0,
                "reasoning_tokens": self.reasoning_tokens,
                "rejected_prediction_tokens": 0,
            },
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": self.cached_tokens},
            "total_tokens": self.total_tokens,
        }

    def legacy(self) -> dict[str, Any]:
        # Legacy completions report only the three counts (recorded completions.json).
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    def responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }
