"""The local adapter: the same request path as the Azure Function, served by any ASGI server.

Used by `tools/run_local.py` (local runs), the loopback tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import Settings
from .errors import MethodNotAllowed, NotFound
from .proxy import handle, health, unrouted
from .routes import HEALTH_ROUTE, PROXY_ROUTES, RouteSpec
from .runtime import RuntimeHolder


def create_app(load_settings: Callable[[], Settings] = Settings.from_env) -> Starlette:
    holder = RuntimeHolder(load_settings)

    def proxy_endpoint(spec: RouteSpec) -> Callable[[Request], object]:
        async def endpoint(request: Request) -> Response:
            return await handle(request, spec, holder)

        return endpoint

    async def health_endpoint(request: Request) -> Response:
        return await health(holder)

    async def not_found(request: Request, exc: Exception) -> Response:
        return await unrouted(request, holder, NotFound(f"No route for {request.url.path}"))

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        message = f"{request.method} is not allowed on {request.url.path}"
        return await unrouted(request, holder, MethodNotAllowed(message))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await holder.get()  # validate settings at start-up: a bad value stops the server here
        try:
            yield
        finally:
            await holder.aclose()  # flush pending usage records

    routes = [Route("/" + HEALTH_ROUTE, health_endpoint, methods=["GET"])]
    routes += [
        Route(starlette_path(spec.template), proxy_endpoint(spec), methods=list(spec.methods))
        for spec in PROXY_ROUTES
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
    app.router.redirect_slashes = False  # Azure OpenAI does not redirect; neither do we
    return app


def starlette_path(template: str) -> str:
    return "/" + template.replace("{*path}", "{path:path}")
