"""The production server behind ``mest serve``: gunicorn, driven through its application API.

:class:`MestGunicorn` is a ``gunicorn.app.base.BaseApplication``: the same arbiter, workers and signal handling
as ``gunicorn -k gevent app:app`` (so the seed's command keeps working and behaves the same), configured from
:class:`ServeOptions` instead of gunicorn's flags. What it adds:

* **Defaults for inference.** One worker per available CPU (inference is CPU-bound: more processes than
  cores only multiply model memory and contend for the cores), gevent workers, a longer worker timeout.
* **The app is checked before any worker starts.** A separate, short-lived process imports the app and lists
  its routes (:func:`describe_in_subprocess`), so a broken ``app.py`` fails ``mest serve`` at once with the
  error instead of a worker boot loop, while the master itself never imports user code (as with plain
  gunicorn; that keeps gevent's monkey-patching first in every worker, and ``--reload`` and ``SIGHUP``
  re-import the code). ``--preload`` imports it once in the master instead (sync and gthread workers only).
* **Models are ready before a worker takes traffic:** each worker runs every predictor's ``setup`` in
  gunicorn's ``post_worker_init`` hook.

Signals are gunicorn's (docs/production.md): ``TERM`` drains (stop accepting, finish in-flight and queued
requests up to ``graceful_timeout``), ``HUP`` starts new workers and drains the old ones, a killed worker is
replaced.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from gunicorn import __version__ as gunicorn_version
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from .loader import describe_app, load_app
from .options import (
    ServeOptions,
    banner,
    default_workers,
    describe_in_subprocess,
    logging_config,
)

__all__ = [
    "DrainingSyncWorker",
    "DrainingThreadWorker",
    "MestGunicorn",
    "ServeOptions",
    "default_workers",
    "describe_in_subprocess",
    "logging_config",
]


class DrainingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, except that a stopping worker closes its listening sockets at once.

    Why: the stock worker stops accepting on ``SIGTERM`` but keeps the socket open until its in-flight
    requests finish, so during the drain new connections are queued by the kernel and then reset when the
    worker exits; closed at once, they are refused (clients and load balancers retry those safely). Under
    ``SIGHUP`` the master and the new workers keep the socket open, so nothing is refused then.
    """

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.close()


class DrainingSyncWorker(SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker, except that a stopping worker answers the connections already accepted.

    Why: the kernel completes connections into the listening socket's queue before any worker calls
    ``accept``; the stock sync worker stops on ``SIGTERM`` after its current request, and those queued
    connections are reset when the last worker exits (measured: 10 of 12 reset). This worker, once stopped,
    takes every connection still queued (non-blocking ``accept`` until none is left), closes its listening
    sockets so new connections are refused, and then answers the ones it took, one by one, within the
    master's ``--graceful-timeout``.
    """

    def run(self) -> None:
        super().run()
        taken = []
        for listener in self.sockets:
            while True:
                try:
                    client, addr = listener.accept()
                except OSError:  # EAGAIN: the queue is empty (or the socket is gone)
                    break
                taken.append((_Address(listener.getsockname()), client, addr))
        for listener in self.sockets:
            listener.close()
        for address, client, addr in taken:
            self.notify()  # the heartbeat: answering them is not "silent"
            client.setblocking(True)
            self.handle(address, client, addr)


class _Address:
    """What gunicorn's request handling asks of a listener (its address), once the listener is closed."""

    def __init__(self, name: Any) -> None:
        self._name = name

    def getsockname(self) -> Any:
        return self._name


#: gunicorn's ``worker_class`` for each ``--worker-class``. The draining gthread worker needs the gthread
#: implementation of recent gunicorn (``set_accept_enabled``); otherwise the stock one is used.
_BUFFERING_GTHREAD = all(
    hasattr(ThreadWorker, name) for name in ("set_accept_enabled", "murder_pending", "enqueue_req", "accept")
)
_WORKER_CLASSES = {
    "gevent": "gevent",
    # Request heads read by the event loop (server/_gthread.py); it builds on gunicorn 23+'s gthread internals.
    "gthread": "mest.server._gthread.BufferingThreadWorker" if _BUFFERING_GTHREAD else "gthread",
    "sync": f"{__name__}.DrainingSyncWorker",
}


class MestGunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's arbiter serving a Mest app with :class:`ServeOptions`.

    Args:
        options: What to serve and how.
        description: The app's routes and settings, printed once gunicorn listens; with ``preload`` it is
            computed from the app imported in the master instead.
    """

    def __init__(self, options: ServeOptions, description: Mapping[str, Any] | None = None) -> None:
        self.options = options
        self.description = description
        super().__init__(usage=None, prog="mest serve")

    def load_config(self) -> None:
        for name, value in self.gunicorn_settings().items():
            if name in self.cfg.settings:  # e.g. control_socket_disable exists from gunicorn 25.1 on
                self.cfg.set(name, value)

    def gunicorn_settings(self) -> dict[str, Any]:
        """The gunicorn settings ``options`` translate to."""
        o = self.options
        return {
            "bind": [o.bind],
            "workers": o.worker_count,
            "worker_class": _WORKER_CLASSES[o.worker_class],
            # gunicorn turns a sync worker with threads > 1 into gthread: give threads to gthread only.
            "threads": o.threads if o.worker_class == "gthread" else 1,
            "timeout": o.timeout,
            "graceful_timeout": o.graceful_timeout,
            "keepalive": o.keepalive,
            "limit_request_line": o.limit_request_line,
            "limit_request_fields": o.limit_request_fields,
            "limit_request_field_size": o.limit_request_field_size,
            "reload": o.reload,
            "preload_app": o.preload,
            "proc_name": f"mest {o.app}",
            "loglevel": o.log_level,
            "logconfig_dict": logging_config(o.log_format, o.log_level),
            # A control socket per server would collide at its default path ($HOME/.gunicorn/gunicorn.ctl).
            "control_socket_disable": True,
            "when_ready": self._when_ready,
            "post_worker_init": _post_worker_init,
        }

    def load(self) -> Callable[..., Any]:
        """Import the app (in each worker, or once in the master with ``preload``)."""
        return load_app(self.options.app)

    def _when_ready(self, arbiter: Any) -> None:
        description = self.description
        if description is None:
            description = describe_app(self.wsgi())
        urls = [str(listener) for listener in arbiter.LISTENERS]
        if self.options.log_format == "json":  # every line stays one JSON object
            logging.getLogger("mest.serve").info(
                "Mest serving %s on %s", self.options.app, ", ".join(urls),
                extra={
                    "urls": urls,
                    "workers": self.options.worker_count,
                    "worker_class": self.options.worker_class,
                    "routes": description["routes"],
                },
            )
        else:
            print(banner(self.options, description, urls, _server_line(self.options)), file=sys.stderr, flush=True)


def _server_line(options: ServeOptions) -> str:
    workers = options.worker_count
    kind = options.worker_class + (f" x {options.threads} threads" if options.worker_class == "gthread" else "")
    return (
        f"gunicorn {gunicorn_version}: {workers} {kind} worker{'s' * (workers != 1)}, timeout {options.timeout}s"
    )


def _post_worker_init(worker: Any) -> None:
    """Load every model in the new worker before it accepts a request."""
    setup = getattr(worker.wsgi, "setup", None)
    if setup is None:  # with --reload, an app that fails to import is replaced by gunicorn's error app
        return
    started = time.perf_counter()
    ready = setup()
    worker.log.info(
        "worker %d: models %s in %.0f ms", os.getpid(), "ready" if ready else "NOT ready (see above)",
        (time.perf_counter() - started) * 1000,
    )


def serve(options: ServeOptions) -> None:
    """Run gunicorn with ``options`` until it is stopped (``SIGTERM``/``SIGINT``); exits the process.

    Raises:
        AppLoadError: The app cannot be imported (checked before gunicorn starts).
    """
    environ = options.app_environ()
    description = None if options.preload else describe_in_subprocess(options.app, environ)
    if description is not None and options.max_body_size not in (None, description["settings"]["max_body_size"]):
        print(
            f"Warning: --max-body-size {options.max_body_size} has no effect: {options.app} passes "
            f"Mest(max_body_size={description['settings']['max_body_size']}) explicitly, which wins.",
            file=sys.stderr, flush=True,
        )
    os.environ.update(environ)  # inherited by every worker the master forks
    MestGunicorn(options, description).run()
