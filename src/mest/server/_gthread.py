"""``mest serve -k gthread``: gunicorn's gthread worker, with request heads read by its event loop, not its threads.

Why: the stock worker hands a connection to a thread as soon as its first byte arrives, and the thread then reads
the rest of the request head (and the body) blocking. A client that sends one byte a second holds a thread for
as long as it likes, so a few dozen of them take every thread and a normal client gets no answer (measured:
0 of 200 beside 300 slow clients, docs/benchmarks.md). Here the worker's main loop reads what each new (or
kept-alive) connection sends, without blocking, until the request head is complete and the body, up to
``BODY_BUFFER`` bytes, is there, as nginx buffers a request before it picks an upstream. Only then does a thread
take the connection, with those bytes handed to gunicorn's parser first. A connection whose head (and buffered
body) does not arrive within the body timeout (``MEST_BODY_TIMEOUT``, default 30 s) is answered 408 and closed
by the main loop; no thread ever waited for it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import selectors
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn

from ..observability import new_request_id
from .gunicorn import DrainingThreadWorker

__all__ = ["BODY_BUFFER", "BufferingThreadWorker"]

#: Bytes of a body read by the main loop before a thread takes the request (the rest the thread reads itself,
#: each read bounded by the body timeout).
BODY_BUFFER = 256 * 1024
#: A request head longer than this goes to a thread as it is, for gunicorn's parser to refuse (414/431).
_HEAD_LIMIT = 64 * 1024
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,19})[ \t]*\r\n", re.IGNORECASE)
_DEFAULT_TIMEOUT = 30.0


def _complete(buffer: bytes | bytearray) -> bool:
    """Whether a thread may take the request: its head has ended, and its body (up to BODY_BUFFER) is here."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return len(buffer) > _HEAD_LIMIT
    found = _CONTENT_LENGTH.search(buffer, 0, end + 2)
    length = int(found.group(1)) if found else 0  # chunked or no body: the thread reads it, under the timeout
    return len(buffer) >= end + 4 + min(length, BODY_BUFFER)


def _timeout_answer() -> bytes:
    request_id = new_request_id()
    body = json.dumps({
        "error": "The request was not received within the server's time limit.",
        "code": "request_timeout", "status": 408, "request_id": request_id,
    }).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connection(TConn):  # type: ignore[misc]  # gunicorn ships no type hints
    """A connection with the bytes the main loop read for its next request, handed to the parser first."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.early = bytearray()
        self.deadline = 0.0

    def init(self) -> None:
        super().init()
        self.hand_over()

    def hand_over(self) -> None:
        """Give the parser what was read ahead (once it exists)."""
        if self.early and self.parser is not None and not self.is_http2:
            self.parser.unreader.unread(bytes(self.early))
            self.early = bytearray()


class BufferingThreadWorker(DrainingThreadWorker):
    """gunicorn's gthread worker whose threads only ever take complete request heads (see the module)."""

    def init_process(self) -> None:
        self._buffering: dict[_Connection, None] = {}  # insertion order is deadline order
        raw = os.environ.get("MEST_BODY_TIMEOUT", "")
        try:
            timeout = float(raw) if raw.strip() else _DEFAULT_TIMEOUT
        except ValueError:
            timeout = _DEFAULT_TIMEOUT
        self._head_timeout = timeout if timeout > 0 else _DEFAULT_TIMEOUT
        super().init_process()

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._buffer(_Connection(self.cfg, client_sock, client_addr, listener.getsockname()))  # non-blocking

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection's next request: buffered like a new one."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._buffer(conn)

    def _buffer(self, conn: _Connection) -> None:
        conn.sock.setblocking(False)
        conn.deadline = time.monotonic() + self._head_timeout
        self._buffering[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))

    def _on_bytes(self, conn: _Connection, client: Any) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before sending a whole request
            self._drop(conn)
            return
        conn.early += data
        if _complete(conn.early):
            self._stop_buffering(conn)
            conn.data_ready = True
            conn.hand_over()  # a kept-alive connection already has its parser
            self.enqueue_req(conn)

    def _stop_buffering(self, conn: _Connection) -> None:
        self._buffering.pop(conn, None)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: _Connection, answer: bytes = b"") -> None:
        self._stop_buffering(conn)
        if answer:
            with contextlib.suppress(OSError):  # non-blocking: a client that reads nothing simply misses it
                conn.sock.send(answer)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in list(self._buffering):
            if conn.deadline > now:
                break
            # A kept-alive connection that sent nothing is simply closed; a started request is answered 408.
            self._drop(conn, _timeout_answer() if conn.early else b"")
