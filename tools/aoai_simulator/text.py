"""Deterministic pseudo-text and token counts: the same request always yields the same output."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any, Final

# Each entry is one token; tokens after the first carry their leading space, as tokenizers do.
_SENTENCE: Final = (
    "The simulator answers with plain words so that every token is easy to count . It keeps "
    "the wire format of Azure OpenAI , including content filter results , usage and timing , "
    "while no model runs anywhere and nothing leaves this machine"
)
_WORDS: Final = tuple(_SENTENCE.split())
_FIRST: Final = tuple(w.capitalize() for w in _WORDS)
_REST: Final = tuple(" " + w for w in _WORDS)


def seed_of(*parts: str) -> int:
    return zlib.crc32("\x1f".join(parts).encode("utf-8", errors="surrogatepass"))


def tokens(count: int, seed: int) -> list[str]:
    """`count` tokens of pseudo-text starting at a seed-dependent word."""
    start = seed % len(_WORDS)
    while not _WORDS[start].isalpha():  # begin like a sentence, not with punctuation
        start = (start + 1) % len(_WORDS)
    out = [_FIRST[start]] if count > 0 else []
    out.extend(_REST[(start + i) % len(_WORDS)] for i in range(1, count))
    return out


def words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> Iterable[str]:
    """Text inside a message `content`: a string or a list of parts (`{"type":"text","text":..}`)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                for key in ("text", "input_text", "output_text"):
                    if isinstance(part.get(key), str):
                        yield part[key]
                if isinstance(part.get("content"), str):
                    yield part["content"]


def prompt_text(messages: Any) -> str:
    """All text of chat `messages` (or Responses `input`), joined; used for seeds and counts."""
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return ""
    texts: list[str] = []
    for message in messages:
        if isinstance(message, dict):
            texts.extend(_text_of(message.get("content")))
        elif isinstance(message, str):
            texts.append(message)
    return "\n".join(texts)


def chat_prompt_tokens(messages: Any, tools: Any = None) -> int:
    """A stable stand-in for tiktoken's chat formula: 3 priming tokens, 4 per message plus its
    words, plus a quarter of the tool schema's JSON length."""
    count = 3
    if isinstance(messages, list):
        for message in messages:
            count += 4
            if isinstance(message, dict):
                count += sum(words(t) for t in _text_of(message.get("content")))
    elif isinstance(messages, str):
        count += 4 + words(messages)
    if isinstance(tools, list) and tools:
        count += len(repr(tools)) // 4
    return count
