"""Call a Mest app in-process, without a server: for testing predictors (and, with
:class:`AdapterConformance`, web-framework adapters).

Example:
    >>> from mest.testing import TestClient
    >>> client = TestClient(app)                                   # doctest: +SKIP
    >>> result = client.post("/api/v1/predict", json={"features": [[5.1, 3.5, 1.4, 0.2]]})  # doctest: +SKIP
    >>> result.status_code, result.json()["probability"]           # doctest: +SKIP

Requests go through the full WSGI stack of the app (its web-framework adapter included), exactly as under a
real server, so what passes here behaves the same under gunicorn.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from ._conformance import AdapterConformance
from .api import Headers
from .codecs import json as json_codec

__all__ = ["AdapterConformance", "Result", "TestClient"]


class Result:
    """The response to a :class:`TestClient` call.

    Attributes:
        status_code: The HTTP status as an ``int``.
        status: The full status line, e.g. ``"200 OK"``.
        headers: Case-insensitive response headers.
        content: The raw body.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, status: str, headers: list[tuple[str, str]], content: bytes) -> None:
        self.status = status
        self.status_code = int(status.split(" ", 1)[0])
        self.headers = Headers(headers)
        self.content = content

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json_codec.loads(self.content)

    def __repr__(self) -> str:
        return f"<Result {self.status}>"


class TestClient:
    """Sends requests straight to a WSGI app (a :class:`~mest.Mest` or anything else WSGI).

    Args:
        app: The application.
        headers: Headers sent with every request.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: Callable[..., Iterable[bytes]], headers: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.headers = dict(headers or {})

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        chunked: bool = False,
    ) -> Result:
        """Send one request.

        Args:
            method: HTTP method.
            path: URL path, optionally with a query string.
            json: A body to send as JSON (sets ``Content-Type: application/json``).
            content: A raw body.
            headers: Extra headers.
            params: Query parameters.
            chunked: Omit ``Content-Length``, as a client streaming with chunked encoding would.
        """
        all_headers = {**self.headers, **(headers or {})}
        body = b""
        if json is not None:
            body = json_codec.dumps(json)
            all_headers.setdefault("Content-Type", "application/json")
        elif content is not None:
            body = content.encode("utf-8") if isinstance(content, str) else content
        path, _, query = path.partition("?")
        if params:
            query = "&".join(filter(None, [query, urlencode(params)]))
        environ = self._environ(method, path, query, body, all_headers, chunked)
        captured: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"] = status
            captured["headers"] = response_headers

        chunks = self.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return Result(captured["status"], captured["headers"], data)

    @staticmethod
    def _environ(
        method: str, path: str, query: str, body: bytes, headers: Mapping[str, str], chunked: bool
    ) -> dict[str, Any]:
        # PEP 3333: PATH_INFO is the URL-decoded path carried as latin-1 code points of its UTF-8 bytes.
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method.upper(),
            "SCRIPT_NAME": "",
            "PATH_INFO": path.encode("utf-8").decode("latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        if not chunked:
            environ["CONTENT_LENGTH"] = str(len(body))
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key == "CONTENT_LENGTH":
                environ["CONTENT_LENGTH"] = value
            else:
                environ[f"HTTP_{key}"] = value
        return environ

    def get(self, path: str, **kwargs: Any) -> Result:
        """Send a GET request (see :meth:`request`)."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Result:
        """Send a POST request (see :meth:`request`)."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Result:
        """Send a PUT request (see :meth:`request`)."""
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Result:
        """Send a DELETE request (see :meth:`request`)."""
        return self.request("DELETE", path, **kwargs)
