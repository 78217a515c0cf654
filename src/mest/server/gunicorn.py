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

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gunicorn import __version__ as gunicorn_version
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from .loader import AppLoadError, describe_app, load_app

__all__ = [
    "DrainingThreadWorker",
    "JsonFormatter",
    "MestGunicorn",
    "ServeOptions",
    "default_workers",
    "describe_in_subprocess",
    "logging_config",
]

WorkerClass = Literal["gevent", "gthread", "sync"]
LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
# LogRecord attributes that are not "extra" fields.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may use (affinity and cgroup quota included).

    Why not gunicorn's ``2 * cores + 1``: that rule is for I/O-bound apps. Inference is CPU-bound, every
    worker holds its own copy of the model, and gevent workers already overlap the I/O of many requests.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``mest serve`` configures; each field is a flag and a ``MEST_*`` variable (docs/cli.md).

    Attributes:
        app: The app spec, ``module:attribute``.
        host: Interface to bind.
        port: Port to bind (``0``: any free port; the banner and gunicorn's log say which).
        workers: Worker processes; ``None``: :func:`default_workers`.
        worker_class: ``gevent`` (default: many concurrent requests per worker, which batching needs),
            ``gthread`` (a thread pool per worker) or ``sync`` (one request at a time per worker).
        threads: Threads per worker for ``gthread``.
        timeout: Seconds a worker may be silent (a request blocking the worker) before it is killed and
            replaced; also the longest a worker may take to start, ``setup`` included.
        graceful_timeout: Seconds in-flight requests get to finish after ``SIGTERM`` or ``SIGHUP``.
        keepalive: Seconds an idle keep-alive connection stays open.
        max_body_size: Overrides the app's ``max_body_size`` (through ``MEST_MAX_BODY_SIZE``), unless the
            code passes ``Mest(max_body_size=...)`` explicitly.
        limit_request_line: Longest request line (method, URL, version) in bytes; 414 beyond it.
        limit_request_fields: Most request headers; 431 beyond it.
        limit_request_field_size: Longest request header line in bytes; 431 beyond it.
        reload: Restart workers when a source file changes (development).
        preload: Import the app once in the master before forking (not with gevent).
        log_format: ``text`` or ``json`` (one JSON object per line) for gunicorn's and Mest's logs.
        log_level: Log level name.
        environ: Variables to set for the app's processes (the master passes them to every worker).
    """

    app: str
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int | None = None
    worker_class: WorkerClass = "gevent"
    threads: int = 4
    timeout: int = 60
    graceful_timeout: int = 30
    keepalive: int = 5
    max_body_size: int | None = None
    limit_request_line: int = 4094
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    reload: bool = False
    preload: bool = False
    log_format: LogFormat = "text"
    log_level: str = "info"
    environ: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preload and self.worker_class == "gevent":
            raise ValueError(
                "--preload does not work with gevent workers: gevent must patch the standard library before "
                "the app is imported. Use --worker-class gthread or sync with --preload, or drop --preload."
            )
        if self.preload and self.reload:
            raise ValueError("--reload and --preload exclude each other: reloading re-imports the app in workers.")

    @property
    def worker_count(self) -> int:
        """The number of workers that will run."""
        return self.workers if self.workers is not None else default_workers()

    @property
    def bind(self) -> str:
        """gunicorn's bind address."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def app_environ(self) -> dict[str, str]:
        """Variables the app's processes get: ``environ`` plus ``MEST_*`` for the app-level flags."""
        env = dict(self.environ)
        if self.max_body_size is not None:
            env["MEST_MAX_BODY_SIZE"] = str(self.max_body_size)
        env["MEST_LOG_FORMAT"] = self.log_format
        return env


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


#: gunicorn's ``worker_class`` for each ``--worker-class``. The draining gthread worker needs the gthread
#: implementation of recent gunicorn (``set_accept_enabled``); otherwise the stock one is used.
_WORKER_CLASSES = {
    "gevent": "gevent",
    "gthread": f"{__name__}.DrainingThreadWorker" if hasattr(ThreadWorker, "set_accept_enabled") else "gthread",
    "sync": "sync",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, extra fields and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, _DATE_FORMAT),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(log_format: LogFormat, level: str = "info") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for gunicorn's and Mest's loggers, all to stderr."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": _TEXT_FORMAT, "datefmt": _DATE_FORMAT}
    )
    level = level.upper()
    logger = {"level": level, "handlers": ["console"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"mest": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "mest", "stream": "ext://sys.stderr"},
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {**logger, "qualname": "gunicorn.error"},
            # Off: Mest's own access log knows request ids and model names.
            "gunicorn.access": {**logger, "level": "WARNING", "qualname": "gunicorn.access"},
        },
    }


def describe_in_subprocess(spec: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Import the app in a separate process and return :func:`~mest.server.loader.describe_app`'s result.

    Why a process: the master must not import user code (see the module docstring), yet ``mest serve``
    should fail before starting gunicorn when the app cannot be imported, and print the routes it serves.

    Raises:
        AppLoadError: The app cannot be imported; the message holds the child's error output.
    """
    command = [sys.executable, "-m", "mest", "routes", "--json", spec]
    result = subprocess.run(
        command, env={**os.environ, **environ}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AppLoadError(result.stderr.strip() or f"{' '.join(command)} exited with {result.returncode}")
    if result.stderr:
        sys.stderr.write(result.stderr)
    description: dict[str, Any] = json.loads(result.stdout)
    return description


def banner(options: ServeOptions, description: Mapping[str, Any], urls: list[str]) -> str:
    """What ``mest serve`` prints once it listens: URL, workers, limits and routes."""
    workers = options.worker_count
    kind = options.worker_class + (f" x {options.threads} threads" if options.worker_class == "gthread" else "")
    lines = [
        f" * Mest serving {options.app} on {', '.join(urls)}",
        f"   gunicorn {gunicorn_version}: {workers} {kind} worker{'s' * (workers != 1)}, timeout "
        f"{options.timeout}s, graceful timeout {options.graceful_timeout}s"
        + (", reload on change" if options.reload else "")
        + (", preloaded" if options.preload else ""),
        f"   max body {description['settings']['max_body_size']} bytes, "
        f"API keys {'required' if description['settings']['auth'] else 'off'}, "
        f"CORS {'on' if description['settings']['cors'] else 'off'}",
    ]
    width = max((len(route["path"]) for route in description["routes"]), default=0)
    for route in description["routes"]:
        model = route.get("model")
        label = ""
        if model:
            label = f"  model {model['name']}" + (f" version {model['version']}" if model["version"] else "")
        lines.append(f"   {route['method']:<7} {route['path']:<{width}}{label}".rstrip())
    if options.host in ("127.0.0.1", "localhost", "::1"):
        lines.append("   (loopback only: --host 0.0.0.0 or MEST_HOST=0.0.0.0 accepts outside connections)")
    return "\n".join(lines)


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
            print(banner(self.options, description, urls), file=sys.stderr, flush=True)


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
