"""The development server behind ``app.run()``: stdlib WSGI, one thread per connection.

Threads make concurrent requests (and batching) work during development with zero dependencies. It is not
hardened for the internet; production runs under gunicorn.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Protocol
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from ..config import RequestLimits, apply_environment
from ..observability import new_request_id, safe_text

__all__ = ["DevServer", "ServedApp", "serve"]

logger = logging.getLogger("mest.devserver")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DevServer(socketserver.ThreadingMixIn, WSGIServer):
    """A threaded WSGI server; worker threads are daemons so Ctrl-C never hangs on a slow client."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 resets bursts of concurrent clients; queue them like gunicorn does.
    request_queue_size = 128


class _ChunkedBody:
    """Decodes a ``Transfer-Encoding: chunked`` body as it is read (wsgiref passes the raw socket through).

    A malformed chunk header ends the body: the request then fails as malformed input, never hangs.
    """

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw = raw
        self._left = 0
        self._done = False

    def _next_chunk(self) -> None:
        line = self._raw.readline(1024)
        try:
            self._left = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            self._left = 0
        if self._left <= 0:
            self._done = True
            while self._raw.readline(1024).strip():  # trailer fields, up to the blank line
                pass

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size is not None and size >= 0 else None
        while not self._done and (wanted is None or wanted > 0):
            if self._left == 0:
                self._next_chunk()
                continue
            take = self._left if wanted is None else min(self._left, wanted)
            data = self._raw.read(take)
            if not data:
                self._done = True
                break
            parts.append(data)
            self._left -= len(data)
            if wanted is not None:
                wanted -= len(data)
            if self._left == 0:
                self._raw.readline(8)  # the CRLF closing the chunk
        return b"".join(parts)


class _OneRequestHandler(ServerHandler):
    """wsgiref's handler, saying ``Connection: close`` (the development server serves one request per
    connection) and accepting the app's own ``Connection: close`` (which wsgiref otherwise rejects as
    hop-by-hop: Mest sets it when a body could not be discarded, see :mod:`mest._connection`)."""

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers = [(name, value) for name, value in headers if name.lower() != "connection"]
        return super().start_response(status, headers, exc_info)

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        self.headers["Connection"] = "close"  # type: ignore[attr-defined]  # set by BaseHandler.start_response


class _QuietHandler(WSGIRequestHandler):
    """Access lines go through :mod:`logging` instead of straight to stderr; oversized heads are refused.

    The limits (:class:`~mest.config.RequestLimits`, gunicorn's defaults, ``MEST_LIMIT_REQUEST_*``) are checked
    before the app sees the request, as gunicorn does under ``mest serve``.
    """

    limits = RequestLimits()
    raw_requestline: bytes
    # A request line too malformed to carry a version still gets a status line (the stdlib's default, HTTP/0.9,
    # answers with a bare body).
    default_request_version = "HTTP/1.0"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the server refuses before the app runs, in Mest's JSON error shape, and the connection closed."""
        status = HTTPStatus(code)
        text = safe_text(message or status.phrase, 300)
        request_id = new_request_id()
        self.log_error("code %d, message %s [request_id=%s]", code, text, request_id)
        body = json.dumps(
            {"error": text, "code": status.phrase.lower().replace(" ", "_"), "status": code, "request_id": request_id}
        ).encode()
        self.close_connection = True
        self.send_response_only(code)  # the standard reason phrase: never the client's bytes
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-ID", request_id)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing: every request already gets Mest's own access line (``mest.access``)."""

    #: The socket timeout (socketserver applies it in ``setup``): the longest wait for the request line,
    #: each header line and each read of the body (``Mest(body_timeout=...)``); ``None`` waits forever.
    timeout = None

    def handle(self) -> None:
        """One request, as wsgiref's ``handle``, except that a client that stalls or goes away is dropped
        quietly (wsgiref would print a traceback for a slow client's timeout) and the answer says
        ``Connection: close``."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return
        except (TimeoutError, ConnectionError):  # headers too slow (the timeout) or the client left
            self.close_connection = True
            return
        handler = _OneRequestHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(),  # type: ignore[arg-type]
            multithread=False,
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back-pointer for logging
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        # What is left are the server's own complaints (a malformed request line, a header too large), which
        # quote what the client sent: escaped like Mest's access line, so no client writes raw bytes to the log.
        logger.warning("%s - %s", self.address_string(), safe_text(format % args, 1024))

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        if self.headers.get("Content-Type") is None:
            # wsgiref fills in text/plain for a request without the header (tritonclient sends none); PEP 3333
            # leaves CONTENT_TYPE out then, as gunicorn and granian do.
            environ.pop("CONTENT_TYPE", None)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Tell the app the input ends by itself (PEP 3333's wsgi.input_terminated, as gunicorn sets it).
            environ["wsgi.input_terminated"] = True
            environ.pop("CONTENT_LENGTH", None)
        return environ

    def parse_request(self) -> bool:
        limits = self.limits
        line = self.raw_requestline.rstrip(b"\r\n")
        if limits.limit_request_line and len(line) > limits.limit_request_line:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "Request line too long")
            return False
        if not super().parse_request():
            return False
        if len(self.headers) > limits.limit_request_fields:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        size = limits.limit_request_field_size
        if size and any(len(name) + len(value) + 2 > size for name, value in self.headers.items()):
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Header field too large")
            return False
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.rfile = _ChunkedBody(self.rfile)  # type: ignore[assignment]
        return True


class _BodyTimeout(Protocol):
    @property
    def body_timeout(self) -> float: ...


class ServedApp(Protocol):
    """What the development server needs of the app it serves (a ``Mest`` app is one; this module never
    imports it, since the app starts the server)."""

    @property
    def settings(self) -> _BodyTimeout: ...

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]: ...

    def setup(self) -> bool: ...

    def routes(self) -> list[tuple[str, str]]: ...


def serve(app: ServedApp, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Serve ``app`` until Ctrl-C (or SIGTERM), then close the socket and return."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if host not in _LOOPBACK:
        logger.warning(
            "the development server is listening on %s, reachable from other machines: "
            "use gunicorn for anything but local development", host,
        )
    app.setup()
    handler = type(
        "_Handler", (_QuietHandler,),
        {"limits": apply_environment(RequestLimits()), "timeout": app.settings.body_timeout or None},
    )
    server = make_server(host, port, app, server_class=DevServer, handler_class=handler)
    bound_port = server.server_address[1]
    shown_host = f"[{host}]" if ":" in host else host
    lines = [f" * Mest development server on http://{shown_host}:{bound_port} (Ctrl-C to quit)"]
    lines += [f"   {method:<6} {path}" for method, path in app.routes()]
    print("\n".join(lines), file=sys.stderr, flush=True)
    _stop_on_signals()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(" * Mest development server stopped.", file=sys.stderr, flush=True)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Make Ctrl-C (SIGINT) and SIGTERM (``kill``, container stop) end the server. Only the main thread may.

    SIGINT is set explicitly: a process started in the background by a non-interactive shell (``cmd &`` in a
    script, CI runners) inherits SIGINT as ignored, and Python then leaves it ignored, so Ctrl-C and
    ``kill -INT`` would do nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
