"""What ``mest serve`` configures, whichever server runs the app: options, logging, the app check, the banner.

Server-neutral, so that :mod:`mest.server.gunicorn` and :mod:`mest.server.granian` share it and neither
needs the other installed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import RequestLimits, env_name, same_as, setting, settings_fields, validate
from ..observability import LogFormat
from ..settings import Settings
from .loader import AppLoadError

__all__ = [
    "LogFormat",
    "LogLevel",
    "ServeOptions",
    "Server",
    "WorkerClass",
    "banner",
    "default_workers",
    "describe_in_subprocess",
    "logging_config",
]

Server = Literal["gunicorn", "granian"]
WorkerClass = Literal["gevent", "gthread", "sync"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]

_TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


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

    Each option is declared here once (:func:`mest.config.setting`): :mod:`mest.cli` builds the click options
    from these fields, and the options that are app settings or request limits are declared as those
    (:func:`mest.config.same_as`), so no default is written twice.

    Attributes:
        app: The app spec, ``module:attribute``.
        server: ``gunicorn`` (default: the seed's server, gevent workers) or ``granian`` (a Rust HTTP server
            running the app in a pool of ``threads`` per worker; ``pip install 'mest[granian]'``).
        host: Interface to bind.
        port: Port to bind (``0``: any free port; the banner and gunicorn's log say which).
        workers: Worker processes; ``None``: :func:`default_workers`.
        worker_class: ``gevent`` (default: many concurrent requests per worker, which batching needs),
            ``gthread`` (a thread pool per worker) or ``sync`` (one request at a time per worker).
        threads: Threads per worker for ``gthread``, and granian's threads running the app per worker.
        timeout: Seconds a worker may be silent (a request blocking the worker) before it is killed and
            replaced; also the longest a worker may take to start, ``setup`` included.
        graceful_timeout: Seconds in-flight requests get to finish after ``SIGTERM`` or ``SIGHUP``.
        keepalive: Seconds an idle keep-alive connection stays open.
        max_body_size: Overrides the app's ``max_body_size`` (through ``MEST_MAX_BODY_SIZE``), unless the
            code passes ``Mest(max_body_size=...)`` explicitly.
        body_timeout: Overrides the app's ``body_timeout`` (through ``MEST_BODY_TIMEOUT``): the longest wait
            between two reads of a request body under gunicorn; granian's header read timeout.
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
    server: Server = setting(
        "gunicorn", flag="--server",
        help="gunicorn: the seed's server (gevent workers by default); granian: a Rust HTTP server running the "
        "app on --threads threads per worker, about twice the throughput (pip install 'mest[granian]').",
    )
    host: str = setting(
        "127.0.0.1", flag="--host", help="Interface to bind; 0.0.0.0 for all IPv4 interfaces (containers)."
    )
    port: int = setting(5000, minimum=0, maximum=65535, flag="--port", help="Port to bind; 0 picks a free one.")
    workers: int | None = setting(
        None, minimum=1, flag="--workers", short="-w", show_default="CPUs available", help="Worker processes."
    )
    worker_class: WorkerClass = setting(
        "gevent", flag="--worker-class", short="-k",
        help="gevent: many concurrent requests per worker (batching needs concurrency); "
        "gthread: a thread pool per worker; sync: one request at a time.",
    )
    threads: int = setting(4, minimum=1, flag="--threads", help="Threads per worker (gthread workers, and granian).")
    timeout: int = setting(
        60, minimum=1, flag="--timeout",
        help="Seconds a blocked worker (or one still starting, model setup included) lives before it is replaced.",
    )
    graceful_timeout: int = setting(
        30, minimum=0, flag="--graceful-timeout", help="Seconds in-flight requests get to finish on SIGTERM/SIGHUP."
    )
    keepalive: int = setting(
        5, minimum=0, flag="--keepalive", help="Seconds an idle keep-alive connection stays open."
    )
    # The app's own settings: None leaves the app's value (its code, its MEST_* variable, its default).
    max_body_size: int | None = same_as(
        Settings, "max_body_size", default=None, to_app=True,
        show_default=f"the app's setting, {Settings.max_body_size}",
    )
    body_timeout: float | None = same_as(
        Settings, "body_timeout", default=None, to_app=True,
        show_default=f"the app's setting, {Settings.body_timeout:g}",
    )
    limit_request_line: int = same_as(RequestLimits, "limit_request_line")
    limit_request_fields: int = same_as(RequestLimits, "limit_request_fields")
    limit_request_field_size: int = same_as(RequestLimits, "limit_request_field_size")
    reload: bool = setting(
        False, flag="--reload", help="Restart workers when a source file changes (development only)."
    )
    preload: bool = setting(
        False, flag="--preload",
        help="Import the app once in the master and fork workers from it (gthread/sync workers only).",
    )
    log_format: LogFormat = same_as(Settings, "log_format", to_app=True)
    log_level: LogLevel = setting("info", flag="--log-level", help="Log level.")
    environ: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)
        if self.server == "granian" and self.preload:
            raise ValueError("--preload is a gunicorn option: granian imports the app in each worker.")
        if self.preload and self.worker_class == "gevent" and self.server == "gunicorn":
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
        for option, _, spec in settings_fields(type(self)):
            value = getattr(self, option.name)
            if spec.to_app and value is not None:
                env[env_name(option.name)] = str(value)
        return env


def logging_config(log_format: LogFormat, level: str = "info") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for gunicorn's and Mest's loggers, all to stderr."""
    formatter: dict[str, Any] = (
        {"()": "mest.observability.JsonFormatter"}
        if log_format == "json"
        else {"()": "mest.observability.TextFormatter", "fmt": _TEXT_FORMAT, "datefmt": _DATE_FORMAT}
    )
    level = level.upper()
    logger = {"level": level, "handlers": ["console"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"mest": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "mest", "stream": "ext://sys.stderr"},
            # Mest's own lines (one access line per request) go through its buffered handler: written in
            # batches, warnings and errors at once (docs/observability.md).
            "mest": {"class": "mest.observability.StderrHandler", "formatter": "mest"},
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "mest": {"level": level, "handlers": ["mest"], "propagate": False},
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


def banner(options: ServeOptions, description: Mapping[str, Any], urls: list[str], server: str) -> str:
    """What ``mest serve`` prints once it listens: URL, server and workers (``server``), limits and routes."""
    lines = [
        f" * Mest serving {options.app} on {', '.join(urls)}",
        f"   {server}, graceful timeout {options.graceful_timeout}s"
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
