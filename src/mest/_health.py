"""The liveness and readiness endpoints (``/health/live``, ``/health/ready`` by default).

Liveness says the process answers; readiness runs every model's ``setup`` (once) and says whether all succeeded,
so an orchestrator sends traffic only to a process whose models loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .api import Request, Response
from .endpoints import Endpoint, Operation, ok
from .errors import ServiceUnavailable

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["endpoints"]

_JSON = "application/json"
_ALIVE = {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}}
_READY = {
    "type": "object",
    "required": ["status", "models"],
    "properties": {
        "status": {"const": "ready"},
        "models": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_LIVE_OPERATION = Operation(
    tag="health", summary="Liveness: the process is up", responses={"200": ok("Alive.", _JSON, _ALIVE)}
)
_READY_OPERATION = Operation(
    tag="health",
    summary="Readiness: every model's setup succeeded",
    responses={"200": ok("Ready; the state of each model.", _JSON, _READY)},
    errors={"503": "A model is not ready (detail.models says which)."},
)


def endpoints(
    live_path: str | None, ready_path: str | None, pipelines: Callable[[], Sequence[Pipeline]]
) -> list[Endpoint]:
    """The health endpoints the settings ask for (``None`` switches one off)."""

    def live(req: Request) -> Response:
        return Response({"status": "alive"})

    def ready(req: Request) -> Response:
        models = {}
        for pipeline in pipelines():
            config = pipeline.config
            key = config.name if config.version is None else f"{config.name}:{config.version}"
            models[key] = "ready" if pipeline.ensure_setup() else "setup failed (see the server log)"
        if all(state == "ready" for state in models.values()):
            return Response({"status": "ready", "models": models})
        raise ServiceUnavailable("Not ready: a model's setup failed.", detail={"models": models})

    found = []
    if live_path:
        found.append(Endpoint("GET", live_path, live, operation=_LIVE_OPERATION))
    if ready_path:
        found.append(Endpoint("GET", ready_path, ready, operation=_READY_OPERATION))
    return found
