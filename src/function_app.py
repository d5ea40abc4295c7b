"""Azure Functions entry point: registers the routes; the request path lives in aoai_proxy.

HTTP streaming needs the FastAPI extension's Request/StreamingResponse types on every HTTP route
and PYTHON_ENABLE_INIT_INDEXING=1 (learn.microsoft.com/azure/azure-functions/functions-reference-python#http-streams).

No `from __future__ import annotations` here: the worker inspects the handlers' annotations to
recognise the streaming types, so they must be real classes, not strings.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from aoai_proxy.config import Settings, inbound_auth_is_entra
from aoai_proxy.landing.blueprint import bp as landing_blueprint
from aoai_proxy.logs import quiet_libraries_from_env
from aoai_proxy.proxy import handle, health
from aoai_proxy.replay_blueprint import bp as replay_blueprint
from aoai_proxy.routes import HEALTH_ROUTE, PROXY_ROUTES, RouteSpec
from aoai_proxy.runtime import RuntimeHolder
from aoai_proxy.telemetry import export_logs_from_env

quiet_libraries_from_env()  # before the first request: the timers' and the landing's SDK calls too
log_export = export_logs_from_env()  # background tasks' lines too (aoai_proxy/telemetry.py)
# Key mode: the Functions host checks the host key APIM sends. Entra mode: App Service
# authentication checks APIM's token before the host, and the proxy checks the caller again
# (aoai_proxy/caller.py); a Functions key would add nothing but a second secret.
_HTTP_AUTH = func.AuthLevel.ANONYMOUS if inbound_auth_is_entra() else func.AuthLevel.FUNCTION
app = func.FunctionApp(http_auth_level=_HTTP_AUTH)
holder = RuntimeHolder(Settings.from_env)
app.register_blueprint(replay_blueprint)  # the dead-letter replay timer
app.register_blueprint(landing_blueprint)  # the usage hub -> Log Analytics


def _register(spec: RouteSpec) -> None:
    async def relay(req: Request) -> Response:
        return await handle(req, spec, holder)

    relay.__name__ = spec.name
    app.route(route=spec.template, methods=list(spec.methods))(relay)


for _spec in PROXY_ROUTES:
    _register(_spec)


@app.route(route=HEALTH_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def healthz(req: Request) -> Response:
    return await health(holder)
