"""Run the proxy locally.

    python tools/run_local.py                      # offline: simulator + proxy on 127.0.0.1
    python tools/run_local.py --proxy-only --port 8080
                                                   # proxy only, upstream = $AZURE_OPENAI_ENDPOINT

The offline mode needs no Azure account: the simulator answers like Azure OpenAI, upstream auth is
off (allowed only for a loopback upstream) and usage records go to a local JSONL file. In
--proxy-only mode every setting comes from the environment (docs/configuration.md); against a real
Azure OpenAI resource, `DefaultAzureCredential` uses your `az login` / `azd auth login`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import socket
import sys
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tools")]

from aoai_proxy.asgi import create_app  # noqa: E402
from aoai_proxy.config import ConfigError, Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--proxy-only", action="store_true", help="no simulator; upstream from the environment"
    )
    parser.add_argument("--simulator-port", type=int, default=8090)
    parser.add_argument(
        "--usage-log", default="usage.jsonl", help="offline mode: where usage records go"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(args))
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    except PortTaken as exc:
        sys.exit(str(exc))
    except KeyboardInterrupt:
        pass


# The offline mode's deployment: any name works against the simulator; this one is in the examples,
# and POST /api/aoaifn (the origin's contract) sends its calls there.
OFFLINE_DEPLOYMENT = "gpt-4o-mini"


class PortTaken(Exception):
    """A port to serve on is in use: said before anything is printed or started."""


async def serve(args: argparse.Namespace) -> None:
    # Bind every port first: the banner and the examples are printed only once they are ours.
    proxy_socket = _bind(args.host, args.port, "the proxy", "--port")
    servers = []
    if args.proxy_only:
        settings = Settings.from_env()
    else:
        from aoai_simulator import SimulatorSettings
        from aoai_simulator import create_app as create_simulator

        simulator_socket = _bind(
            "127.0.0.1", args.simulator_port, "the simulator", "--simulator-port"
        )
        simulator_url = f"http://127.0.0.1:{args.simulator_port}"
        servers.append((_server(create_simulator(SimulatorSettings())), simulator_socket))
        settings = dataclasses.replace(
            Settings(openai_endpoint=simulator_url),
            upstream_auth="none",
            sink="jsonl",
            usage_log_path=args.usage_log,
            aoaifn_deployment=OFFLINE_DEPLOYMENT,
        )
    servers.append((_server(create_app(lambda: settings)), proxy_socket))
    _print_examples(args, settings)
    await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))


def _bind(host: str, port: int, what: str, option: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortTaken(
            f"cannot serve {what} on {host}:{port}: {exc.strerror or exc}. "
            f"Stop whatever uses port {port}, or pick another port with {option} N."
        ) from None
    return sock


def _server(app: object) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))


def _print_examples(args: argparse.Namespace, settings: Settings) -> None:
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{host}:{args.port}"
    deployment = settings.aoaifn_deployment or OFFLINE_DEPLOYMENT
    url = f"{base}/openai/deployments/{deployment}/chat/completions?api-version=2025-04-01-preview"
    where = settings.usage_log_path if settings.sink == "jsonl" else settings.sink
    report = (
        f"Report: PYTHONPATH=src {sys.executable} -m aoai_proxy.report {settings.usage_log_path}\n"
        if settings.sink == "jsonl"
        else ""
    )
    print(
        f"""
Proxy on {base} -> {settings.openai_endpoint} (usage records: {where})

curl -N '{url}' \\
  -H 'content-type: application/json' \\
  -d '{{"messages":[{{"role":"user","content":"Hello"}}],"stream":true}}'

{sys.executable} -c '
from openai import AzureOpenAI
client = AzureOpenAI(azure_endpoint="{base}", api_key="unused-locally", api_version="2025-04-01-preview")
for chunk in client.chat.completions.create(model="{deployment}", stream=True,
        messages=[{{"role": "user", "content": "Hello"}}]):
    print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)
print()'

The origin's contract (the deployment is {settings.aoaifn_deployment or "AZURE_OPENAI_DEPLOYMENT, unset"}):
curl -N '{base}/api/aoaifn' -H 'content-type: application/json' \\
  -d '{{"messages":[{{"role":"user","content":"Hello"}}],"stream":true,"stream_options":{{"include_usage":true}}}}'

{report}Ctrl+C stops.
""",
        flush=True,
    )


if __name__ == "__main__":
    main()
