"""The ``GET /metrics`` endpoint record, with its OpenAPI operation."""

from __future__ import annotations

from ..endpoints import Endpoint, Operation, Responder, ok

__all__ = ["metrics_endpoint"]

_OPERATION = Operation(
    tag="service",
    summary="Prometheus metrics (text format; OpenMetrics when asked for)",
    responses={"200": ok("The metrics.", "text/plain", {"type": "string"})},
)


def metrics_endpoint(path: str, serve: Responder) -> Endpoint:
    """``GET path`` answered by ``serve`` (:meth:`Observability.serve_metrics`)."""
    return Endpoint("GET", path, serve, operation=_OPERATION)
