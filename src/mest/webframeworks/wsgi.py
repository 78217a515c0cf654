"""A dependency-free adapter on plain WSGI, and the environ ⇄ :mod:`mest.api` translation it is made of.

It proves the :class:`~mest.webframeworks.WebFramework` seam (the same behavioural tests run against it and
falcon) and is the shortest example of an adapter to copy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..api import Headers, Request, Response, StreamingResponse
from .base import Responder, WebFramework, WSGIApplication

__all__ = ["EnvironHeaders", "PlainWSGI", "request_from_environ", "start_wsgi_response"]

_REASONS: dict[int, str] = {}


def _status_line(status: int) -> str:
    line = _REASONS.get(status)
    if line is None:
        from http import HTTPStatus

        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _REASONS[status] = f"{status} {phrase}"
    return line


class EnvironHeaders(Headers):
    """Case-insensitive headers read straight from a WSGI environ, on demand.

    Why not copy them into a dict: a request handler usually reads two or three headers, and walking the
    whole environ on every request is the largest fixed cost of building a request.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    @staticmethod
    @functools.lru_cache(maxsize=256)  # the few names code asks for, each request: computed once
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key

    def __getitem__(self, name: str) -> str:
        value = self._environ.get(self._key(name))
        if value is None or value == "":
            raise KeyError(name)
        return str(value)

    def get(self, name: str, default: Any = None) -> Any:
        value = self._environ.get(self._key(name))
        return default if value is None or value == "" else value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def _names(self) -> list[str]:
        names = [key[5:].replace("_", "-").lower() for key in self._environ if key.startswith("HTTP_")]
        names += [key.replace("_", "-").lower() for key in ("CONTENT_TYPE", "CONTENT_LENGTH") if self._environ.get(key)]
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"EnvironHeaders({dict(self.items())!r})"


def request_from_environ(environ: dict[str, Any], path: str | None = None) -> Request:
    """Build Mest's request from a WSGI environ, leaving the body unread.

    Args:
        environ: The PEP 3333 environ.
        path: The decoded path if the framework already computed it; else ``PATH_INFO`` is used.
    """
    raw_length = environ.get("CONTENT_LENGTH")
    try:
        content_length = int(raw_length) if raw_length else None
    except ValueError:
        content_length = None
    if content_length is not None and content_length < 0:
        content_length = None
    stream = environ.get("wsgi.input")
    if content_length is None and not environ.get("wsgi.input_terminated"):
        # PEP 3333: without a Content-Length the app must not read past what the server guarantees ends.
        stream = None
    if path is None:
        # PEP 3333 hands PATH_INFO over as latin-1 decoded bytes; undo that to get UTF-8 paths right.
        raw = environ.get("PATH_INFO", "") or "/"
        try:
            path = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            path = raw
    return Request(
        environ.get("REQUEST_METHOD", "GET"),
        path,
        headers=EnvironHeaders(environ),
        query_string=environ.get("QUERY_STRING", ""),
        stream=stream,
        content_length=content_length,
        client_addr=environ.get("REMOTE_ADDR"),
    )


def start_wsgi_response(response: Response, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Send a rendered Mest response through WSGI's ``start_response``; return the body iterable.

    A :class:`~mest.api.StreamingResponse` goes out without ``Content-Length`` and its body is returned as
    it is, so the server writes each piece as it comes and calls the body's ``close()`` (PEP 3333).
    """
    if isinstance(response, StreamingResponse):
        headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        start_response(_status_line(response.status), headers)
        return response.body  # type: ignore[no-any-return]
    body = response.body
    assert isinstance(body, bytes), "responders given to adapters return encoded (bytes) bodies"
    if not body and response.get_header("content-length") is not None:
        headers = response.headers  # an answer to HEAD: the length of the body a GET would get
    else:
        headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    start_response(_status_line(response.status), headers)
    return [body]


class PlainWSGI(WebFramework):
    """Routes by exact (method, path) with a dictionary; no third-party code at all."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Responder] = {}
        self._fallback: Responder | None = None

    def add_route(self, method: str, path: str, responder: Responder) -> None:
        self._routes[(method.upper(), path)] = responder

    def set_fallback(self, responder: Responder) -> None:
        self._fallback = responder

    def wsgi_app(self) -> WSGIApplication:
        routes = self._routes
        fallback = self._fallback
        if fallback is None:
            raise RuntimeError("PlainWSGI.wsgi_app() called before set_fallback()")

        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = request_from_environ(environ)
            responder = routes.get((request.method, request.path), fallback)
            return start_wsgi_response(responder(request), start_response)

        return application
