"""The proxy process the benchmark measures: `python -m aoai_bench_proxy FD` (src and tools on
PYTHONPATH), the pickled `(shape, Settings)` on stdin, serving on the listening socket FD.

It is its own module, outside the aoai_bench package, and is started as a plain subprocess (not a
multiprocessing spawn, which re-imports the parent's main module and the target's package): so the
measured process loads only what the proxy loads, plus, for the worker shape, the Functions HTTP
extension's server stack (FastAPI and uvicorn), never the bench's httpx, its simulator or its
report code (about 18 MiB of a 60 MiB baseline before; tests/integration/test_bench_proxy.py).
"""

# No `from __future__ import annotations`: FastAPI resolves the catch-all route's annotations when
# the route is declared, and FastAPI is imported inside worker_shaped_app only (the local shape must
# not load it).

import asyncio
import os
import pickle
import re
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

# Debug path of the bench only: when set, the process writes its sys.modules there when it exits.
MODULES_ENV = "AOAI_BENCH_PROXY_MODULES"


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raises the soft RLIMIT_NOFILE towards `wanted` (within the hard limit); returns the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def deployed_packages() -> set[str]:
    """Package names in src/requirements.txt (what the Function App installs)."""
    requirements = Path(__file__).resolve().parents[1] / "src" / "requirements.txt"
    names = set()
    for line in requirements.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            names.add(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower())
    return names


def serve_local(settings: Any, sock: socket.socket) -> None:
    """The proxy's ASGI adapter under uvicorn[standard] (httptools, uvloop), as local runs."""
    from aoai_proxy.asgi import create_app

    run_uvicorn(create_app(lambda: settings), sock)


def run_uvicorn(app: Any, sock: socket.socket) -> None:
    """uvicorn as local runs use it (the simulator is served the same way)."""
    import uvicorn

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


def serve_worker(settings: Any, sock: socket.socket) -> None:
    """The proxy as the Functions Python worker serves it (azurefunctions-extensions-http-fastapi
    1.0.1, `WebServer.serve`): `uvicorn.Config(app, host, port)` with its defaults, awaited with
    `server.serve()` on the worker's own asyncio loop, in front of a FastAPI app with one catch-all
    route. Defaults mean http="auto": httptools when installed, and what is installed there is
    src/requirements.txt, so the parser follows that file, not this venv; the loop is asyncio's
    whatever is installed (uvloop would need uvicorn to create the loop, which serve() does not).
    The defaults include uvicorn's access log on stdout (here /dev/null), one line per request,
    until the runtime, built at the first request, quiets `uvicorn.access` as it does in Azure
    (aoai_proxy.logs)."""
    import uvicorn

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    http = "httptools" if "httptools" in deployed_packages() else "h11"
    config = uvicorn.Config(worker_shaped_app(settings), http=http)  # the worker's: host, port
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


def worker_shaped_app(settings: Any) -> Any:
    """FastAPI's catch-all route in front of `handle`, like the worker's; the Functions host's
    routing (which function, which route values) is done here by matching the route templates."""
    from fastapi import FastAPI, Request
    from starlette.responses import Response
    from starlette.routing import compile_path

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


def main(argv: list[str]) -> None:
    raise_fd_limit()
    shape, settings = pickle.loads(sys.stdin.buffer.read())
    sock = socket.socket(fileno=int(argv[0]))
    # uvicorn re-raises the SIGTERM it handled once it has shut down: exit normally then, so the
    # `finally` below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        (serve_worker if shape == "worker" else serve_local)(settings, sock)
    finally:
        modules_path = os.environ.get(MODULES_ENV)
        if modules_path:
            Path(modules_path).write_text("\n".join(sorted(sys.modules)))


if __name__ == "__main__":
    main(sys.argv[1:])
