"""Simulator settings: one frozen object built once (by the CLI or a test) and shared read-only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    # Timing: the first event is sent `ttft_ms` after the request arrived, then one event every
    # `token_ms` (both overridable per request with x-sim-ttft-ms / x-sim-token-ms).
    ttft_ms: float = 150.0
    token_ms: float = 15.0
    # Generated completion length in tokens (one content event per token); x-sim-tokens overrides.
    completion_tokens: int = 20
    embedding_dimensions: int = 1536
    # What the answering model calls itself (Azure reports the model version, not the deployment).
    model: str = "gpt-4o-mini-2024-07-18"
    embedding_model: str = "text-embedding-3-small"
    system_fingerprint: str = "fp_efad92c60b"
    region: str = "East US"
    model_session: str = "d070-20250922222629"
    # Advertised by GET /openai/v1/models.
    deployments: tuple[str, ...] = ("gpt-4o-mini", "text-embedding-3-small")
    rate_limit_requests: int = 300
    rate_limit_tokens: int = 30000
    # Seconds a simulated 429 tells the client to wait (x-sim-retry-after overrides). Small by
    # default because the openai SDK honours it before retrying.
    retry_after_s: int = 1
    # When set, every call must carry `Authorization: Bearer <token>` or gets Azure's 401.
    required_bearer_token: str | None = None
    # Folder of recordings (NAME.meta.json + body) for x-sim-replay; None disables replay.
    fixtures_dir: Path | None = None
    # How many requests app.state.recorder keeps (oldest dropped first).
    recorder_size: int = 1000
