"""Open Inference Protocol (KServe V2) REST endpoints for every registered predictor.

Placeholder seam: ``server_endpoints`` and ``model_endpoints`` return the (method, path, handler) triples the
app registers. Filled in by the V2 work (issue 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..webframeworks.base import Handler

if TYPE_CHECKING:
    from ..app import Mest
    from ..pipeline import Pipeline

__all__ = ["model_endpoints", "server_endpoints"]

Endpoint = tuple[str, str, Handler]


def server_endpoints(app: Mest) -> list[Endpoint]:
    """Endpoints that exist once per app (``/v2``, ``/v2/health/*``)."""
    return []


def model_endpoints(app: Mest, pipeline: Pipeline) -> list[Endpoint]:
    """Endpoints for one registered model (metadata, ready, infer; with and without version)."""
    return []
