"""Serve a Mest app on Ray Serve: every route, V2, health, metrics and docs, through Ray's HTTP proxy.

``pip install 'mest[ray]'``. Each replica imports the app from its ``module:attribute`` string itself, so
nothing of the app (models, locks, sockets) is pickled across processes; the WSGI app is bridged to Ray's
ASGI ingress with a2wsgi, which runs it on a thread pool. Three settings make it behave like ``mest serve``:

* **Readiness is the replica's health.** Ray calls :meth:`MestReplica.check_health` periodically; it answers
  the app's own readiness endpoint, so a model whose ``setup`` failed makes the replica unhealthy and Ray
  replaces it, exactly as a Kubernetes readiness probe would take the pod out.
* **max_ongoing_requests follows batching.** Ray admits at most ``max_ongoing_requests`` requests (default 5)
  into a replica at once, which would cap every Mest batch at 5. :func:`application` sets it to
  :func:`ongoing_requests_for` the app's largest ``max_batch_size`` (room for one batch being inferred while
  the next one fills; at least :data:`MIN_ONGOING`), and gives the WSGI bridge as many threads, since each
  admitted request holds a thread while it waits in the batch.
* **Autoscaling passes through.** ``autoscaling_config`` and every other Ray deployment option are Ray's own.

See docs/deploy.md.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from ray import serve

from ..server.loader import load_app

__all__ = [
    "DEPLOYMENT_NAME",
    "MIN_ONGOING",
    "MestReplica",
    "application",
    "build",
    "deployment_options",
    "ongoing_requests_for",
]

#: The Serve deployment's name (``serve status``, ``deployments:`` in a Serve config file).
DEPLOYMENT_NAME = "Mest"
#: The fewest requests a replica admits, batching or not: Ray's default before 2.32 (now 5). Past the limit,
#: Ray's router keeps the surplus and retries with a growing back-off, which starved 64 closed-loop clients
#: at 5, and nearly at 32, in bench/ray_serve.py (docs/benchmarks.md); admitted requests wait in Mest's own
#: queue instead, where its ``max_queue`` and ``timeout_s`` limits apply.
MIN_ONGOING = 100


def ongoing_requests_for(max_batch_size: int) -> int:
    """How many concurrent requests a replica admits for a largest batch of ``max_batch_size``.

    Two batches' worth (one being inferred while the next one fills, so batches stay full under load), and
    at least :data:`MIN_ONGOING`.
    """
    return max(MIN_ONGOING, 2 * max_batch_size)


def _environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "ray-health",
        "SERVER_PORT": "0", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


class MestReplica:
    """One Serve replica: imports the app, sets up its models, serves it through a2wsgi.

    Args:
        app: The app spec, ``module:attribute``.
        search_path: A folder put first on ``sys.path`` if it exists on the replica's machine (the driver's
            working directory, so a local cluster finds the app without a ``working_dir``).
        threads: Threads of the WSGI bridge (at least ``max_ongoing_requests``).
    """

    def __init__(self, app: str, search_path: str | None = None, threads: int = 10) -> None:
        if search_path and os.path.isdir(search_path) and search_path not in sys.path:
            sys.path.insert(0, search_path)
        self._app = load_app(app)
        self._threads = threads
        settings = self._app.settings
        self._health_path = settings.health_ready_path or settings.health_live_path
        # Models load now, in the replica, so the first request does not pay for it and health is known.
        self._app.setup()

    def __serve_build_asgi_app__(self) -> Any:
        """The ASGI app Ray's ingress serves: the Mest WSGI app on a thread pool."""
        from a2wsgi import WSGIMiddleware

        wsgi: Any = self._app  # a WSGI callable; a2wsgi's protocol type is narrower than Mest's signature
        return WSGIMiddleware(wsgi, workers=self._threads)

    def check_health(self) -> None:
        """Mest's readiness, for Ray: raises (replica unhealthy, replaced) unless the app answers 2xx.

        Raises:
            RuntimeError: The readiness endpoint did not answer 2xx.
        """
        if self._health_path is None:
            return
        status: list[str] = []
        body = self._app(_environ(self._health_path), lambda s, headers, exc_info=None: status.append(s))
        text = b"".join(body)
        if not status or not status[0].startswith("2"):
            raise RuntimeError(f"{self._health_path} answered {status[0] if status else 'nothing'}: {text!r}")


# The ingress wrapper Ray builds around the class, defined once at import so replicas unpickle it by name.
MestIngress = serve.ingress()(MestReplica)


def deployment_options(import_string: str, **overrides: Any) -> dict[str, Any]:
    """The Serve deployment options for the app: Mest's defaults, then ``overrides`` (Ray's own options).

    Imports the app (in this process) to read its batching settings.

    Args:
        import_string: The app spec, ``module:attribute``.
        **overrides: Any ``serve.deployment`` option (``num_replicas``, ``autoscaling_config``,
            ``max_ongoing_requests``, ``ray_actor_options``...).

    Returns:
        The options, with ``max_ongoing_requests`` from the app's batching unless given.
    """
    app = load_app(import_string)
    largest = max((p.config.max_batch_size for p in app.pipelines), default=1)
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": ongoing_requests_for(largest),
        # Model setup may take a while on a busy node; Ray's default 30 s health timeout is kept.
        "health_check_period_s": 5,
    }
    options.update(overrides)
    return options


def application(import_string: str, **deployment_options_: Any) -> Any:
    """The Ray Serve application serving the Mest app ``import_string``; pass it to ``serve.run``.

    Args:
        import_string: The app spec, ``module:attribute``; each replica imports it.
        **deployment_options_: Ray ``serve.deployment`` options, over Mest's defaults
            (:func:`deployment_options`), e.g. ``num_replicas=2`` or
            ``autoscaling_config={"min_replicas": 1, "max_replicas": 4}``.

    Returns:
        A ``ray.serve.Application``.

    Example:
        >>> from ray import serve
        >>> import mest.deploy.ray
        >>> serve.run(mest.deploy.ray.application("app:app", num_replicas=2), route_prefix="/")  # doctest: +SKIP
    """
    options = deployment_options(import_string, **deployment_options_)
    threads = int(options["max_ongoing_requests"])
    deployment = serve.deployment(**options)(MestIngress)
    return deployment.bind(import_string, os.getcwd(), threads)


def build(args: dict[str, Any]) -> Any:
    """The application builder a Serve config file names (``import_path: mest.deploy.ray:build``).

    Args:
        args: ``{"app": "module:app"}``, optionally ``"threads"`` (the WSGI bridge's; the default follows
            batching like ``max_ongoing_requests``). The config's ``deployments:`` section sets Ray's options.

    Returns:
        A ``ray.serve.Application``.
    """
    spec = args["app"]
    options = deployment_options(spec)
    threads = int(args.get("threads", options["max_ongoing_requests"]))
    return serve.deployment(**options)(MestIngress).bind(spec, os.getcwd(), threads)
