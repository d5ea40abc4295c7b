"""The simulator and the proxy as real uvicorn servers, each in its own (spawned) process.

Also what the benchmark reads about a process from /proc: resident memory (VmRSS), its high-water
mark (VmHWM, reset through clear_refs) and CPU time.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import resource
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

import httpx

# FastAPI resolves the catch-all route's annotations from this module's globals.
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aoai_proxy.config import Settings
from aoai_simulator import SimulatorSettings

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
STAMP_HEADER = "x-bench-id"
STAMPS_PATH = "/_bench/stamps"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raises the soft RLIMIT_NOFILE towards `wanted` (within the hard limit); returns the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class StampingApp:
    """Wraps the simulator: for requests carrying x-bench-id, notes the monotonic time (ns) at which
    each non-empty body message is handed to the server; `GET /_bench/stamps` returns and forgets
    them. Requests without the header pass straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._stamps: dict[str, list[int]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if scope["path"] == STAMPS_PATH:
            body = json.dumps(self._stamps).encode()
            self._stamps = {}
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        key = dict(scope["headers"]).get(STAMP_HEADER.encode())
        if key is None:
            await self._app(scope, receive, send)
            return
        await self._app(scope, receive, _stamping(send, self._stamps.setdefault(key.decode(), [])))


def _stamping(send: Send, stamps: list[int]) -> Callable[[Message], Awaitable[None]]:
    async def stamped(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            stamps.append(time.monotonic_ns())
        await send(message)

    return stamped


def _bound_socket(port_out: Connection) -> socket.socket:
    raise_fd_limit()
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose proto is
    # IPPROTO_TCP (asyncio.base_events._set_nodelay), and accepted sockets copy the listener's.
    # With proto 0, a response written right after the previous one on a kept-alive connection
    # waits for the peer's delayed ACK (~40 ms on Linux): Nagle's algorithm, not the app.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port_out.send(sock.getsockname()[1])
    port_out.close()
    return sock


def _serve(app: Any, port_out: Connection) -> None:
    import uvicorn  # in the child only

    sock = _bound_socket(port_out)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        backlog=4096,  # a burst of 1,000 connects must not be refused
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _simulator_main(settings: SimulatorSettings, port_out: Connection) -> None:
    from aoai_simulator import create_app

    _serve(StampingApp(create_app(settings)), port_out)


def _proxy_main(settings: Settings, port_out: Connection) -> None:
    from aoai_proxy.asgi import create_app

    _serve(create_app(lambda: settings), port_out)


def _worker_proxy_main(settings: Settings, port_out: Connection) -> None:
    """The proxy as the Functions Python worker serves it (azurefunctions-extensions-http-fastapi
    1.0.1, `WebServer.serve`): `uvicorn.Config(app, host, port)` with its defaults, awaited with
    `server.serve()` on the worker's own asyncio loop, in front of a FastAPI app with one catch-all
    route. Defaults mean http="auto": httptools when installed, and what is installed there is
    src/requirements.txt, so the parser follows that file, not this venv; the loop is asyncio's
    whatever is installed (uvloop would need uvicorn to create the loop, which serve() does not).
    The defaults include uvicorn's access log on stdout (here /dev/null), one line per request,
    until the runtime, built at the first request, quiets `uvicorn.access` as it does in Azure
    (aoai_proxy.logs)."""
    import uvicorn  # in the child only

    sock = _bound_socket(port_out)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    http = "httptools" if "httptools" in deployed_packages() else "h11"
    config = uvicorn.Config(worker_shaped_app(settings), http=http)  # the worker's: host, port
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


def deployed_packages() -> set[str]:
    """Package names in src/requirements.txt (what the Function App installs)."""
    requirements = Path(__file__).resolve().parents[2] / "src" / "requirements.txt"
    names = set()
    for line in requirements.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            names.add(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower())
    return names


def worker_shaped_app(settings: Settings) -> FastAPI:
    """FastAPI's catch-all route in front of `handle`, like the worker's; the Functions host's
    routing (which function, which route values) is done here by matching the route templates."""
    from aoai_proxy.asgi import starlette_path
    from aoai_proxy.proxy import handle, health
    from aoai_proxy.routes import HEALTH_ROUTE, PROXY_ROUTES
    from aoai_proxy.runtime import RuntimeHolder

    holder = RuntimeHolder(lambda: settings)
    matchers = [(compile_path(starlette_path(spec.template)), spec) for spec in PROXY_ROUTES]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Not in the worker (it has no shutdown hook): here so the bench can count the records.
        yield
        await holder.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"],
    )
    async def catch_all(request: Request) -> Response:
        if request.url.path == "/" + HEALTH_ROUTE:
            return await health(holder)
        for (regex, _, convertors), spec in matchers:
            match = regex.match(request.url.path)
            if match is not None:
                values = match.groupdict()
                request.path_params.clear()  # the worker's RequestSynchronizer.sync_route_params
                request.path_params.update(
                    {name: convertors[name].convert(value) for name, value in values.items()}
                )
                return await handle(request, spec, holder)
        raise LookupError(f"no route for {request.url.path}")

    return app


@dataclass(frozen=True)
class ServerProcess:
    name: str
    url: str
    process: BaseProcess

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return pid

    def stop(self) -> None:
        """SIGTERM: uvicorn shuts down gracefully and runs the lifespan (the proxy flushes its sink)."""
        self.process.terminate()
        self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_TIMEOUT_S)

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    def reset_hwm(self) -> bool:
        """Resets VmHWM to the current RSS (Linux clear_refs 5); False where that is not allowed."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as file:
                file.write("5")
        except OSError:
            return False
        return True

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)


def proc_status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (stat fields 14, 15)


def start_simulator(settings: SimulatorSettings) -> ServerProcess:
    return _start("simulator", _simulator_main, settings, STAMPS_PATH)


ProxyShape = Literal["local", "worker"]


def start_proxy(settings: Settings, shape: ProxyShape = "local") -> ServerProcess:
    main = _worker_proxy_main if shape == "worker" else _proxy_main
    return _start("proxy", main, settings, "/healthz")


def _start(name: str, target: Callable[..., None], settings: Any, ready_path: str) -> ServerProcess:
    context = multiprocessing.get_context("spawn")
    port_in, port_out = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(settings, port_out), name=name, daemon=True)
    process.start()
    port_out.close()
    server: ServerProcess | None = None
    try:
        if not port_in.poll(START_TIMEOUT_S):
            raise TimeoutError(f"{name} did not bind a port within {START_TIMEOUT_S:g} s")
        server = ServerProcess(name, f"http://127.0.0.1:{port_in.recv()}", process)
        _wait_ready(server, ready_path)
        return server
    except BaseException:
        process.kill()
        process.join(STOP_TIMEOUT_S)
        raise
    finally:
        port_in.close()


def _wait_ready(server: ServerProcess, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=2.0, trust_env=False) as client:
        while True:
            if not server.process.is_alive():
                raise RuntimeError(f"{server.name} exited during start-up")
            try:
                if client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server.name} not ready within {START_TIMEOUT_S:g} s")
            time.sleep(0.05)
