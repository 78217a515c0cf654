"""``GET /openapi.json`` (OpenAPI 3.1 of every route) and ``GET /docs`` (Swagger UI, bundled, works offline).

See docs/schemas-openapi.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._docs import SWAGGER_UI_VERSION, Handler, asset_paths, docs_endpoints
from ._spec import OPENAPI_VERSION, OpenAPIEndpoint, build_spec

if TYPE_CHECKING:
    from ..app import Mest

__all__ = [
    "OPENAPI_VERSION",
    "SWAGGER_UI_VERSION",
    "OpenAPIEndpoint",
    "asset_paths",
    "build_spec",
    "docs_endpoints",
    "endpoints",
]


def endpoints(app: Mest) -> list[tuple[str, str, Handler]]:
    """The endpoints the app's settings ask for: the document, and the docs page with its files."""
    settings = app.settings
    found: list[tuple[str, str, Handler]] = []
    if settings.openapi_path:
        found.append(("GET", settings.openapi_path, OpenAPIEndpoint(app)))
        if settings.docs_path:
            found += docs_endpoints(settings.docs_path, settings.openapi_path, settings.title)
    return found
