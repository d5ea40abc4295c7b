"""The simulator and the proxy as real uvicorn servers, each in its own process: the simulator
spawned by multiprocessing, the proxy started as `python -m aoai_bench_proxy` so that it loads
nothing of the bench.

Also what the benchmark reads about a process from /proc: resident memory (VmRSS), its high-water
mark (VmHWM, reset through clear_refs) and CPU time.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aoai_bench_proxy import raise_fd_limit, run_uvicorn
from aoai_proxy.config import Settings
from aoai_simulator import SimulatorSettings

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
STAMP_HEADER = "x-bench-id"
STAMPS_PATH = "/_bench/stamps"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


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
    run_uvicorn(app, _bound_socket(port_out))


def _simulator_main(settings: SimulatorSettings, port_out: Connection) -> None:
    from aoai_simulator import create_app

    _serve(StampingApp(create_app(settings)), port_out)


@dataclass(frozen=True)
class ServerProcess:
    name: str
    url: str
    process: BaseProcess | ProxyChild

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


class ProxyChild:
    """The proxy's process (aoai_bench_proxy, a plain subprocess) with the calls ServerProcess makes."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def pid(self) -> int:
        return self._popen.pid

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def terminate(self) -> None:
        self._popen.terminate()

    def kill(self) -> None:
        self._popen.kill()

    def join(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)


def start_proxy(
    settings: Settings, shape: ProxyShape = "local", env: dict[str, str] | None = None
) -> ServerProcess:
    """Starts `python -m aoai_bench_proxy` on a socket bound here and handed over by descriptor,
    with this interpreter and src/tools on its path; `env` adds variables (its debug path)."""
    tools = Path(__file__).resolve().parents[1]
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # see _bound_socket
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        child_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tools.parent / "src"), str(tools)]),
            **(env or {}),
        }
        popen = subprocess.Popen(
            [sys.executable, "-m", "aoai_bench_proxy", str(sock.fileno())],
            stdin=subprocess.PIPE,
            pass_fds=[sock.fileno()],
            env=child_env,
        )
        assert popen.stdin is not None
        popen.stdin.write(pickle.dumps((shape, settings)))
        popen.stdin.close()
        server = ServerProcess(
            "proxy", f"http://127.0.0.1:{sock.getsockname()[1]}", ProxyChild(popen)
        )
    try:
        _wait_ready(server, "/healthz")
    except BaseException:
        popen.kill()
        popen.wait(STOP_TIMEOUT_S)
        raise
    return server


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
