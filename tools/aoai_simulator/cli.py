"""Command line: `python tools/aoai_simulator --host 127.0.0.1 --port 8090 --ttft-ms 150 --token-ms 15`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from .settings import SimulatorSettings
from .streaming import StreamCut


class _HideStreamCuts(logging.Filter):
    """x-sim-fail-after cuts streams on purpose; uvicorn would log each one as a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, SimulatorSettings]:
    defaults = SimulatorSettings()
    parser = argparse.ArgumentParser(
        prog="aoai_simulator", description="Local Azure OpenAI simulator (offline upstream)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--ttft-ms", type=float, default=defaults.ttft_ms, help="time to first event"
    )
    parser.add_argument(
        "--token-ms", type=float, default=defaults.token_ms, help="delay between events"
    )
    parser.add_argument(
        "--tokens", type=int, default=defaults.completion_tokens, help="completion length"
    )
    parser.add_argument("--dimensions", type=int, default=defaults.embedding_dimensions)
    parser.add_argument("--model", default=defaults.model, help="model name reported in answers")
    parser.add_argument("--region", default=defaults.region)
    parser.add_argument(
        "--require-bearer",
        metavar="TOKEN",
        default=None,
        help="answer 401 unless this bearer token is sent",
    )
    parser.add_argument(
        "--fixtures-dir", type=Path, default=None, help="recordings for x-sim-replay"
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = SimulatorSettings(
        ttft_ms=args.ttft_ms,
        token_ms=args.token_ms,
        completion_tokens=args.tokens,
        embedding_dimensions=args.dimensions,
        model=args.model,
        region=args.region,
        required_bearer_token=args.require_bearer,
        fixtures_dir=args.fixtures_dir,
    )
    return args, settings


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn  # imported here so that importing the package stays cheap

    from .app import create_app

    args, settings = parse_args(argv)
    print(
        f"Azure OpenAI simulator on http://{args.host}:{args.port}/openai/ (Ctrl+C to stop)",
        flush=True,
    )
    # Many concurrent streams: no access log, and a backlog large enough for a burst of 1,000.
    config = uvicorn.Config(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        backlog=4096,
    )
    # After Config: it (re)configures uvicorn's loggers.
    logging.getLogger("uvicorn.error").addFilter(_HideStreamCuts())
    uvicorn.Server(config).run()
