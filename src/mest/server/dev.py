"""The development server behind ``app.run()``: stdlib WSGI, one thread per connection.

Threads make concurrent requests (and batching) work during development with zero dependencies. It is not
hardened for the internet; production runs under gunicorn.
"""

from __future__ import annotations

import logging
import socketserver
import sys
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from ..app import Mest

__all__ = ["DevServer", "serve"]

logger = logging.getLogger("mest.devserver")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DevServer(socketserver.ThreadingMixIn, WSGIServer):
    """A threaded WSGI server; worker threads are daemons so Ctrl-C never hangs on a slow client."""

    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    """Access lines go through :mod:`logging` instead of straight to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s - %s", self.address_string(), format % args)


def serve(app: Mest, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Serve ``app`` until Ctrl-C (or SIGTERM), then close the socket and return."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if host not in _LOOPBACK:
        logger.warning(
            "the development server is listening on %s, reachable from other machines: "
            "use gunicorn for anything but local development", host,
        )
    app.setup()
    server = make_server(host, port, app, server_class=DevServer, handler_class=_QuietHandler)
    bound_port = server.server_address[1]
    shown_host = f"[{host}]" if ":" in host else host
    lines = [f" * Mest development server on http://{shown_host}:{bound_port} (Ctrl-C to quit)"]
    lines += [f"   {method:<6} {path}" for method, path in app.routes()]
    print("\n".join(lines), file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(" * Mest development server stopped.", file=sys.stderr, flush=True)
