"""What Mest tells the WSGI server about the connection: the body idle timeout, and when it must close.

Two things PEP 3333 gives an app no word for, done here for every server Mest runs on:

* **The body idle timeout.** Under gunicorn (every worker class, ``mest serve`` or plain ``gunicorn``) the
  environ carries the client socket (``gunicorn.socket``): Mest sets its timeout to ``body_timeout`` before the
  app reads the body, so a client that stalls mid-body gets 408 and frees its worker, thread or greenlet
  instead of holding it until the worker timeout kills the whole worker (gthread and gevent never do).
  The development server sets the same timeout itself; granian has no such hook (docs/cli.md).
* **Closing.** When Mest could not read (or discard) the whole body, the connection cannot carry another
  request: the response says ``Connection: close`` and the server must close. gunicorn drops a ``Connection``
  header set by an app (it is hop-by-hop), so it is told through its response object's ``force_close``,
  and then writes ``Connection: close`` itself; wsgiref (the development server) forbids the header from apps
  and closes every connection anyway; other servers (granian) get the header and honour it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["CLOSE", "DRAIN_SECONDS", "ConnectionControl", "drain_limit"]

#: Longest Mest spends discarding an unread body before it gives up and closes (each read waits at most the
#: body timeout).
DRAIN_SECONDS = 10.0
#: Mest discards up to this much of an unread body, or twice ``max_body_size`` when that is larger.
DRAIN_BYTES = 64 * 1024 * 1024


#: The header Mest adds when the connection must close after the response (see ``ConnectionControl``).
CLOSE = ("Connection", "close")


def drain_limit(max_body_size: int) -> int:
    """The most bytes of an unread body Mest discards so its answer reaches the client (see module doc)."""
    return max(DRAIN_BYTES, 2 * max_body_size)


def _wants_close(headers: list[tuple[str, str]]) -> int:
    """The index of Mest's own ``Connection: close`` header (``mest._wrap`` writes exactly ``CLOSE``), or -1.

    Only Mest's: PEP 3333 forbids applications hop-by-hop headers, so a predictor never sets one; and an
    exact tuple search runs in C, where a case-insensitive scan was a Python loop on every response.
    """
    return headers.index(CLOSE) if CLOSE in headers else -1


class ConnectionControl:
    """Applies the body timeout to the server's socket and passes "close this connection" on to the server.

    Args:
        body_timeout: Seconds the server waits between two reads of a request body; ``0`` switches the
            timeout off.
    """

    __slots__ = ("body_timeout",)

    def __init__(self, body_timeout: float) -> None:
        self.body_timeout = body_timeout

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Callable[..., Any]:
        """Prepare ``environ``'s connection and return the ``start_response`` the app must call."""
        sock = environ.get("gunicorn.socket")
        if sock is not None and self.body_timeout:
            with contextlib.suppress(OSError):  # already closed by the peer: the read reports it
                sock.settimeout(self.body_timeout)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            index = _wants_close(headers)
            if index >= 0:  # rare: looked up only then, to keep the common path cheap
                owner = getattr(start_response, "__self__", None)
                force_close = getattr(owner, "force_close", None)
                if force_close is not None or _is_wsgiref(owner):
                    headers = headers[:index] + headers[index + 1 :]
                    if force_close is not None:
                        force_close()
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return start


def _is_wsgiref(owner: object) -> bool:
    module = type(owner).__module__
    return module.startswith("wsgiref.") or module == "mest.server.dev"
