"""The default adapter: falcon's router and WSGI handling, translated to and from :mod:`mest.api`.

Kept thin on purpose: falcon routes and parses the path, Mest does everything else. Imported only when the
falcon adapter is used, so the core never loads falcon.
"""

from __future__ import annotations

from typing import Any

import falcon

from ..api import StreamingResponse
from .base import Responder, WebFramework, WSGIApplication
from .wsgi import request_from_environ

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
        self.handlers: dict[str, Responder] = {}
        self.fallback = fallback

    def dispatch(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = request_from_environ(req.env, path=req.path)
        _write(resp, self.handlers.get(request.method, self.fallback)(request))

    on_get = on_head = on_post = on_put = on_patch = on_delete = on_options = dispatch


class FalconFramework(WebFramework):
    """Serves Mest's endpoints with a ``falcon.App``.

    Args:
        app: An existing falcon app to add Mest's routes to (so Mest can live beside your own resources);
            a new one by default.
    """

    def __init__(self, app: falcon.App[Any, Any] | None = None) -> None:
        self.app = app if app is not None else falcon.App(media_type=falcon.MEDIA_JSON)
        self.app.req_options.strip_url_path_trailing_slash = False
        self._resources: dict[str, _Resource] = {}
        self._fallback: Responder | None = None

    def add_route(self, method: str, path: str, handler: Responder) -> None:
        resource = self._resources.get(path)
        if resource is None:
            resource = self._resources[path] = _Resource(self._fallback_handler)
            self.app.add_route(path, resource)
        resource.handlers[method.upper()] = handler

    def _fallback_handler(self, request: Any) -> Any:
        assert self._fallback is not None, "set_fallback() must be called before serving"
        return self._fallback(request)

    def set_fallback(self, handler: Responder) -> None:
        self._fallback = handler

        def sink(req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
            _write(resp, handler(request_from_environ(req.env, path=req.path)))

        def on_falcon_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
            # falcon's own 404/405 (methods we do not map, such as TRACE): answer in Mest's JSON shape.
            sink(req, resp)

        self.app.add_sink(sink, prefix="/")
        self.app.add_error_handler(falcon.HTTPError, on_falcon_error)

    def wsgi_app(self) -> WSGIApplication:
        return self.app
