"""Encoding a :class:`mest.api.Response` body into bytes with the right ``Content-Type``, in place.

Done once, by the app, before a response reaches a web-framework adapter: adapters only ever copy bytes and
headers, so a new adapter cannot get serialization wrong.
"""

from __future__ import annotations

from ..api import Response, StreamingResponse
from . import json

__all__ = ["encode_body"]


def encode_body(response: Response) -> None:
    """Turn ``response.body`` into bytes and add a ``Content-Type`` header if it has none, in place.

    In place because it runs once per request on the app's own response object (a copy would cost an object
    per request for nothing). A :class:`~mest.api.StreamingResponse` is left untouched: its pieces are
    already bytes.

    Raises:
        TypeError: The body has no JSON form.
    """
    if isinstance(response, StreamingResponse):  # sent piece by piece by the server, never joined here
        return
    body = response.body
    content_type = response.get_header("content-type")
    if isinstance(body, bytes):
        default_type = "application/octet-stream"
    elif isinstance(body, str):
        body = body.encode("utf-8")
        default_type = "text/plain; charset=utf-8"
    elif body is None and response.status in (204, 304):
        body = b""
        default_type = None
    else:
        body = json.dumps(body)
        default_type = json.JSON_CONTENT_TYPE
    response.body = body
    if content_type is None and default_type is not None:
        response.headers.append(("Content-Type", default_type))
