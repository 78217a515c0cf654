"""The ``/docs`` page: Swagger UI, served from files installed with Mest; the page asks no other host.

Every URL in the page is relative (the page works behind a reverse proxy that adds a path prefix), and a
``Content-Security-Policy`` lets the browser load and connect to this origin only.
"""

from __future__ import annotations

import functools
import gzip
import html
import posixpath
import zlib
from importlib import resources

from ..api import Request, Response
from ..endpoints import Endpoint, Responder
from ._operations import DOCS_OPERATION

__all__ = ["ASSETS", "SWAGGER_UI_VERSION", "asset_paths", "docs_endpoints"]

SWAGGER_UI_VERSION = "5.35.0"
#: The files under the docs path: name → (content type, stored gzip-compressed).
ASSETS: dict[str, tuple[str, bool]] = {
    "swagger-ui-bundle.js": ("text/javascript; charset=utf-8", True),
    "swagger-ui.css": ("text/css; charset=utf-8", True),
    "swagger-init.js": ("text/javascript; charset=utf-8", False),
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
_CACHE = "public, max-age=86400"  # the page's links carry a version, so an upgrade is never served stale

# No inline script (the CSP forbids it): the page's own settings are read from data attributes.
_INIT_JS = b"""window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

_ASSETS_VERSION = f"{SWAGGER_UI_VERSION}-{zlib.crc32(_INIT_JS):08x}"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{base}swagger-ui.css?v={v}">
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec_url}"></div>
<script src="{base}swagger-ui-bundle.js?v={v}"></script>
<script src="{base}swagger-init.js?v={v}"></script>
</body>
</html>
"""


def _relative(target: str, page: str) -> str:
    """``target`` as a URL relative to the page at ``page`` (both absolute paths)."""
    relative = posixpath.relpath(target, posixpath.dirname(page) or "/")
    return relative if relative != "." else "./"


@functools.cache
def _stored(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


@functools.cache
def _plain(name: str) -> bytes:
    return gzip.decompress(_stored(name + ".gz"))


def _asset(name: str, content_type: str, compressed: bool) -> Responder:
    def serve(req: Request) -> Response:
        headers = [("Content-Type", content_type), ("Cache-Control", _CACHE), ("X-Content-Type-Options", "nosniff")]
        if not compressed:
            return Response(_INIT_JS, headers=headers)
        headers.append(("Vary", "Accept-Encoding"))
        if "gzip" in (req.headers.get("accept-encoding") or ""):
            headers.append(("Content-Encoding", "gzip"))
            return Response(_stored(name + ".gz"), headers=headers)
        return Response(_plain(name), headers=headers)

    return serve


def asset_paths(docs_path: str) -> list[str]:
    """The paths of the page's files, which live under the page's own path."""
    base = docs_path.rstrip("/")
    return [f"{base}/{name}" for name in ASSETS]


def docs_endpoints(docs_path: str, openapi_path: str, title: str) -> list[Endpoint]:
    """The page, and its files (left out of the OpenAPI document)."""
    base = docs_path.rstrip("/")
    asset_base = _relative(f"{base}/x", docs_path)[:-1]  # "docs/" for /docs, "" for /
    page = _PAGE.format(
        v=_ASSETS_VERSION,
        title=html.escape(f"{title} - API docs"),
        base=html.escape(asset_base),
        spec_url=html.escape(_relative(openapi_path, docs_path)),
    ).encode("utf-8")
    page_headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", _CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-cache"),
    ]

    def serve_page(req: Request) -> Response:
        return Response(page, headers=page_headers)

    endpoints = [Endpoint("GET", docs_path, serve_page, operation=DOCS_OPERATION)]
    for name, (content_type, compressed) in ASSETS.items():
        endpoints.append(Endpoint("GET", f"{base}/{name}", _asset(name, content_type, compressed), documented=False))
    return endpoints
