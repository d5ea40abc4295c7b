"""The simulator's ASGI app: routes of Azure OpenAI's URL space mapped to the operations."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from . import operations as ops
from . import routes
from .recorder import Recorder
from .replay import ReplayStore
from .settings import SimulatorSettings

# (path, operation): the deployments routes need ?api-version=, the v1 ones take the deployment
# name from the body's `model`.
_ROUTES: tuple[tuple[str, str, ops.Operation], ...] = (
    ("POST", "/openai/deployments/{deployment}/chat/completions", ops.CHAT),
    ("POST", "/openai/deployments/{deployment}/completions", ops.COMPLETIONS),
    ("POST", "/openai/deployments/{deployment}/embeddings", ops.EMBEDDINGS),
    ("POST", "/openai/responses", ops.RESPONSES),
    ("GET", "/openai/models", ops.MODELS),
    ("POST", "/openai/v1/chat/completions", ops.V1_CHAT),
    ("POST", "/openai/v1/embeddings", ops.V1_EMBEDDINGS),
    ("POST", "/openai/v1/responses", ops.V1_RESPONSES),
    ("GET", "/openai/v1/models", ops.V1_MODELS),
)

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    """A fresh simulator; `app.state.recorder` holds what it received and sent."""
    settings = settings or SimulatorSettings()
    recorder = Recorder(settings.recorder_size)
    replays = ReplayStore(settings.fixtures_dir)

    def endpoint(op: ops.Operation | None) -> routes.Endpoint:
        return routes.Endpoint(op, settings, recorder, replays)

    table = [Route(path, endpoint(op), methods=[method]) for method, path, op in _ROUTES]
    # Everything else answers like Azure does for an unknown path (and is recorded too).
    table.append(Route("/{path:path}", endpoint(None), methods=_ALL_METHODS))
    app = Starlette(routes=table)
    app.state.settings = settings
    app.state.recorder = recorder
    return app
