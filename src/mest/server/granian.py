"""``mest serve --server granian``: the same app on granian, a Rust HTTP server, for throughput.

granian (https://github.com/emmett-framework/granian) parses HTTP and handles connections in Rust and runs the
WSGI app in a pool of Python threads per worker process. On the peer benchmark (docs/peers.md) that serves
about twice the requests per second of gunicorn's workers with the same app, because the per-request work
gunicorn and gevent do in Python is done in Rust. gunicorn stays the default and the seed's documented path;
this is the option for when requests per second per core matter most.

What ``mest serve`` keeps the same on either server: the app check and banner before start, every model's
``setup`` in each worker before it serves, metrics summed over the workers (the master's pid names the shared
directory, see :mod:`mest.observability`), Mest's logging, ``SIGTERM`` to drain and stop,
``SIGHUP`` to replace the workers, a worker that dies replaced. What granian does its own way (docs/cli.md):
no worker timeout (a stuck request is not killed), its own request size limits in place of ``--limit-request-*``,
and ``--worker-class`` does not apply (the app runs on ``--threads`` threads per worker).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from granian import Granian
from granian import __version__ as granian_version
from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels

from ..observability import MASTER_ENV
from .options import ServeOptions, banner, describe_in_subprocess, logging_config

__all__ = ["APP_ENV", "serve"]

#: The app spec the workers import (read by :mod:`mest.server._granian_worker`).
APP_ENV = "MEST_SERVE_APP"
_WORKER_TARGET = "mest.server._granian_worker:app"


def _free_port(host: str) -> int:
    """A port to bind (granian cannot bind port 0: its workers would each get another)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _server_line(options: ServeOptions) -> str:
    workers = options.worker_count
    return (
        f"granian {granian_version}: {workers} worker{'s' * (workers != 1)} x {options.threads} threads"
        + (", reload on change" if options.reload else "")
    )


def _http1_settings(options: ServeOptions) -> HTTP1Settings:
    """granian's HTTP/1 settings: keep-alive on or off, and its one client timeout, ``header_read_timeout``.

    Why one timeout for two flags: granian (hyper) runs that timer from the end of a response until the next
    request head is in, so it bounds both the idle wait of a keep-alive connection and the time to send a
    head (measured on loopback: an idle keep-alive connection closed after 3.0 s with a 3 s timeout). Mest
    sets it to the shorter of ``--keepalive`` (so that flag takes effect, as on gunicorn) and
    ``--body-timeout`` (granian has no body timeout Mest can set, so the head timeout stands in for it);
    with neither, granian's own 30 s stays (docs/cli.md).
    """
    keep_alive = options.keepalive > 0
    timeouts = [seconds for seconds in (options.keepalive if keep_alive else 0, options.body_timeout) if seconds]
    if not timeouts:
        return HTTP1Settings(keep_alive=keep_alive)
    return HTTP1Settings(keep_alive=keep_alive, header_read_timeout=max(1, round(min(timeouts) * 1000)))


def granian_settings(options: ServeOptions, port: int) -> dict[str, Any]:
    """The arguments of ``granian.Granian`` that ``options`` translate to."""
    log_config = logging_config(options.log_format, options.log_level)
    level = options.log_level.upper()
    log_config["loggers"].update(
        {
            "_granian": {"level": level, "handlers": ["console"], "propagate": False},
            "granian.access": {"level": "WARNING", "handlers": ["console"], "propagate": False},
        }
    )
    return {
        "address": options.host,
        "port": port,
        "interface": Interfaces.WSGI,
        "workers": options.worker_count,
        "blocking_threads": options.threads,
        "http1_settings": _http1_settings(options),
        "log_enabled": True,
        "log_level": LogLevels(options.log_level.lower()),
        "log_dictconfig": log_config,
        "log_access": False,  # Mest's own access log knows request ids and models
        "respawn_failed_workers": True,
        "workers_kill_timeout": options.graceful_timeout or None,
        "reload": options.reload,
    }


def serve(options: ServeOptions) -> None:
    """Run granian with ``options`` until it is stopped (``SIGTERM``/``SIGINT``).

    Raises:
        AppLoadError: The app cannot be imported (checked before granian starts).
    """
    environ = options.app_environ()
    description = describe_in_subprocess(options.app, environ)
    port = options.port or _free_port(options.host)
    environ[APP_ENV] = options.app
    environ[MASTER_ENV] = str(os.getpid())
    os.environ.update(environ)  # inherited by every worker
    host = f"[{options.host}]" if ":" in options.host else options.host
    urls = [f"http://{host}:{port}"]
    print(banner(options, description, urls, _server_line(options)), file=sys.stderr, flush=True)
    Granian(_WORKER_TARGET, **granian_settings(options, port)).serve()
