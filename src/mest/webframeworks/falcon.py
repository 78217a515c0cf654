"""The default adapter: falcon's router and WSGI handling, translated to and from :mod:`mest.api`.

Kept thin on purpose. Mest's paths are exact, so on the adapter's own falcon app a request to one of them is
looked up in a dictionary and answered straight from the WSGI environ, before falcon builds its request and
response objects that Mest would only translate and throw away (measured in docs/benchmarks.md: the
largest single saving per request). Everything else (your own resources, unknown paths, methods a path does
not serve) goes through falcon. On a falcon app you pass in, every request goes through falcon, so your
middleware and hooks apply to Mest's routes too. Imported only when the falcon adapter is used, so the core
never loads falcon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import falcon

from ..api import StreamingResponse
from .base import Responder, WebFramework, WSGIApplication
from .wsgi import request_from_environ, start_wsgi_response

__all__ = ["FalconFramework"]


def _write(resp: falcon.Response, response: Any) -> None:
    resp.status = response.status
    if isinstance(response, StreamingResponse):
        # falcon returns an iterable resp.stream to the WSGI server as the response body, unjoined, and the
        # server calls its close() at the end or on a disconnect.
        resp.stream = response.body
    else:
        resp.data = response.body
    for name, value in response.headers:
        if name.lower() == "content-type":
            resp.content_type = value
        else:
            resp.append_header(name, value)


class _Resource:
    """One falcon resource per path; every supported method dispatches by Mest's own method table."""

    def __init__(self, fallback: Responder) -> None:
        self.responders: dict[str, Responder] = {}
        self.fallback = fallback

    def dispatch(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = request_from_environ(req.env, path=req.path)
        _write(resp, self.responders.get(request.method, self.fallback)(request))

    on_get = on_head = on_post = on_put = on_patch = on_delete = on_options = dispatch


class FalconFramework(WebFramework):
    """Serves Mest's endpoints with a ``falcon.App``.

    Args:
        app: An existing falcon app to add Mest's routes to (so Mest can live beside your own resources);
            a new one by default.
    """

    def __init__(self, app: falcon.App[Any, Any] | None = None) -> None:
        self._owns_app = app is None
        self.app = app if app is not None else falcon.App(media_type=falcon.MEDIA_JSON)
        self.app.req_options.strip_url_path_trailing_slash = False
        self._resources: dict[str, _Resource] = {}
        self._fallback: Responder | None = None

    def add_route(self, method: str, path: str, responder: Responder) -> None:
        resource = self._resources.get(path)
        if resource is None:
            resource = self._resources[path] = _Resource(self._fallback_responder)
            self.app.add_route(path, resource)
        resource.responders[method.upper()] = responder

    def _fallback_responder(self, request: Any) -> Any:
        assert self._fallback is not None, "set_fallback() must be called before serving"
        return self._fallback(request)

    def set_fallback(self, responder: Responder) -> None:
        self._fallback = responder

        def sink(req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
            _write(resp, responder(request_from_environ(req.env, path=req.path)))

        def on_falcon_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
            # falcon's own 404/405 (methods we do not map, such as TRACE): answer in Mest's JSON shape.
            sink(req, resp)

        self.app.add_sink(sink, prefix="/")
        self.app.add_error_handler(falcon.HTTPError, on_falcon_error)

    def wsgi_app(self) -> WSGIApplication:
        if not self._owns_app:
            return self.app
        return _direct(self._resources, self.app)


def _direct(resources: dict[str, _Resource], app: falcon.App[Any, Any]) -> WSGIApplication:
    """Mest's exact (method, path) answered from the environ; the rest handed to falcon.

    ``resources`` is the live table: routes added while serving are found at once. A path that is not plain
    ASCII is looked up by falcon (which decodes it) and still reaches the same resource.
    """

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        resource = resources.get(path)
        if resource is not None and path.isascii():
            responder = resource.responders.get(environ.get("REQUEST_METHOD", "GET"))
            if responder is not None:
                return start_wsgi_response(responder(request_from_environ(environ, path=path)), start_response)
        return app(environ, start_response)

    return application
