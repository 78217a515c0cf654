"""``GET /openapi.json`` (OpenAPI 3.1 of every endpoint) and ``GET /docs`` (Swagger UI, bundled, works offline).

The document is built by walking the app's endpoints, each of which carries its own operation
(:class:`mest.endpoints.Operation`). See docs/schemas-openapi.md.
"""

from __future__ import annotations

from ..endpoints import Endpoint
from ._docs import SWAGGER_UI_VERSION, asset_paths, docs_endpoints
from ._operations import OPENAPI_OPERATION, predict_operation
from ._spec import OPENAPI_VERSION, DocumentSource, OpenAPIEndpoint, build_spec

__all__ = [
    "OPENAPI_VERSION",
    "SWAGGER_UI_VERSION",
    "DocumentSource",
    "OpenAPIEndpoint",
    "asset_paths",
    "build_spec",
    "docs_endpoints",
    "endpoints",
    "predict_operation",
]


def endpoints(source: DocumentSource, openapi_path: str | None, docs_path: str | None) -> list[Endpoint]:
    """The endpoints the settings ask for: the document (``None``: none), and the docs page with its files."""
    found: list[Endpoint] = []
    if openapi_path:
        found.append(Endpoint("GET", openapi_path, OpenAPIEndpoint(source), operation=OPENAPI_OPERATION))
        if docs_path:
            found += docs_endpoints(docs_path, openapi_path, source.title)
    return found
