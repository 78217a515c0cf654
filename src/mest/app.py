"""``Mest``: the registry of predictors, the settings, and the WSGI callable that serves them."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from time import perf_counter
from typing import Any, Literal

from . import openapi
from ._connection import DRAIN_SECONDS, ConnectionControl, drain_limit
from .api import Request, Response
from .codecs.body import render
from .config import apply_environment, track_explicit_arguments
from .errors import MestError, MethodNotAllowed, NotFound, ServiceUnavailable, error_body
from .observability import Observability, RepeatFilter, configure_logging, fault_key, new_request_id
from .pipeline import HandlerConfig, Pipeline, new_queue
from .predictors import PredictorBase
from .protocol import generate, openai, v2
from .security import AccessPolicy, After, check_api_keys, check_cors_origins, check_public_paths
from .webframeworks.base import Handler, WebFramework, WSGIApplication

__all__ = ["Mest", "Settings"]

logger = logging.getLogger("mest")

_ROUTE_RE = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+/?$|^/$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

_CORRECT_USAGE = """
Correct usage:

    class MyPredictor(PredictorBase):
        def pre_process(self, input_data, req): ...
        def infer(self, processed_data): ...
        def post_process(self, prediction, req): ...

    app.add_inference_handler(MyPredictor(), "/api/v1/predict")"""


@dataclass(frozen=True)
class Settings:
    """Every setting of a Mest app, passed down as one object.

    Attributes:
        max_body_size: Largest accepted request body in bytes (413 beyond it, refused before it is read).
        body_timeout: Longest wait, in seconds, between two reads of a request body (408 and the connection
            closed beyond it, so a stalled client frees its worker); ``0`` switches it off. Applied on the
            development server and gunicorn (docs/production.md).
        health_live_path: Liveness endpoint; ``None`` switches it off.
        health_ready_path: Readiness endpoint; ``None`` switches it off.
        api_keys: Keys accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; empty (the
            default) switches authentication off. Hidden from ``repr`` and logs (docs/security.md).
        public_paths: Path patterns (``fnmatch``: ``*`` matches anything, ``/`` included) served without a
            key when ``api_keys`` is set; ``None`` (the default): the health endpoints.
        cors_origins: Browser origins allowed by CORS (``"*"`` for any); empty (the default) switches CORS off.
        metrics_path: Prometheus metrics endpoint; ``None`` switches it and the collection of metrics off.
        openapi_path: OpenAPI 3.1 document of every route; ``None`` switches it (and the docs page) off.
        docs_path: Interactive API docs (Swagger UI, bundled); ``None`` switches it off.
        title: The API's title in the OpenAPI document and on the docs page.
        log_format: ``"text"`` (for people) or ``"json"`` (one JSON object per line) for the log handler
            Mest installs when logging is not configured (docs/observability.md).
        access_log: One ``mest.access`` log line per request.
        log_bodies: Add the request body (truncated to 1 KiB) to access lines. Off by default: bodies may
            carry personal data.
        stream_time_limit_s: Longest a streamed response may last, in seconds; a stream still running then
            ends with an error event (docs/streaming.md). ``None`` (the default): no limit.

    Each setting can also come from its ``MEST_<NAME>`` environment variable (docs/cli.md): an explicit
    ``Mest(...)`` argument wins over the variable, which wins over the default.
    """

    max_body_size: int = 10 * 1024 * 1024
    body_timeout: float = 30.0
    health_live_path: str | None = "/health/live"
    health_ready_path: str | None = "/health/ready"
    api_keys: tuple[str, ...] = dataclass_field(default=(), repr=False)
    public_paths: tuple[str, ...] | None = None
    cors_origins: tuple[str, ...] = ()
    metrics_path: str | None = "/metrics"
    openapi_path: str | None = "/openapi.json"
    docs_path: str | None = "/docs"
    title: str = "Mest"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True
    log_bodies: bool = False
    stream_time_limit_s: float | None = None

    def __post_init__(self) -> None:
        # Lists are accepted (``Mest(api_keys=[...])``) and stored as tuples, so settings stay immutable.
        object.__setattr__(self, "api_keys", check_api_keys(self.api_keys))
        object.__setattr__(self, "public_paths", check_public_paths(self.public_paths))
        object.__setattr__(self, "cors_origins", check_cors_origins(self.cors_origins))
        if not isinstance(self.max_body_size, int) or self.max_body_size < 0:
            raise ValueError(f"max_body_size must be a non-negative integer, got {self.max_body_size!r}")
        if isinstance(self.body_timeout, bool) or not isinstance(self.body_timeout, (int, float)) or not (
            0 <= self.body_timeout < float("inf")
        ):
            raise ValueError(f"body_timeout must be a non-negative number of seconds, got {self.body_timeout!r}")
        for field in ("health_live_path", "health_ready_path", "metrics_path", "openapi_path", "docs_path"):
            path = getattr(self, field)
            if path is not None and not _ROUTE_RE.fullmatch(path):
                raise ValueError(f"{field} must be a path like '/health/live', got {path!r}")
        if self.docs_path is not None and self.openapi_path is None:
            raise ValueError("docs_path needs openapi_path: the docs page shows the OpenAPI document")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json', got {self.log_format!r}")
        if self.stream_time_limit_s is not None and not self.stream_time_limit_s > 0:
            raise ValueError(f"stream_time_limit_s must be > 0 or None, got {self.stream_time_limit_s!r}")
        if not isinstance(self.title, str) or not self.title:
            raise ValueError(f"title must be a non-empty string, got {self.title!r}")
        for field in ("access_log", "log_bodies"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field} must be True or False, got {getattr(self, field)!r}")


def _default_framework() -> WebFramework:
    from .webframeworks.falcon import FalconFramework

    return FalconFramework()


def _derive_name(route: str) -> str:
    """The model name for a route registered without one: its path segments joined by ``-``."""
    name = "-".join(segment for segment in route.strip("/").split("/") if segment)
    return re.sub(r"[^A-Za-z0-9._-]", "-", name) or "root"


def _check_name(name: Any, version: Any) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"Invalid model name {name!r}: use letters, digits, '.', '_' or '-' (max 128).")
    if name in v2.RESERVED_NAMES:
        raise ValueError(
            f"The model name {name!r} is taken by the Open Inference Protocol's own paths (/v2/models/{name}); "
            "pass another name=."
        )
    if version is not None and (not isinstance(version, str) or not _NAME_RE.fullmatch(version)):
        raise ValueError(f"Invalid model version {version!r}: use letters, digits, '.', '_' or '-'.")


def _check_predictor(predictor: Any) -> None:
    if isinstance(predictor, type):
        raise TypeError(
            f"add_inference_handler() got the class {predictor.__name__}, not an instance: "
            f"pass {predictor.__name__}() instead.{_CORRECT_USAGE}"
        )
    missing = [m for m in ("pre_process", "infer", "post_process") if not callable(getattr(predictor, m, None))]
    if missing:
        raise TypeError(
            f"{type(predictor).__name__} is not a predictor: it has no {', '.join(missing)} method(s). "
            f"Subclass mest.predictors.PredictorBase.{_CORRECT_USAGE}"
        )
    if type(predictor).infer is PredictorBase.infer:
        raise TypeError(f"{type(predictor).__name__} must implement infer(self, processed_data).{_CORRECT_USAGE}")


def _complete(req: Request, response: Response, after: After | None, drain_bytes: int) -> None:
    """What every answer gets once its handler is done: the unread body drained (or the connection closed,
    so an early answer reaches the client), CORS headers, the request id, and no body for HEAD."""
    if not req.finish_body(drain_bytes, DRAIN_SECONDS):
        response.headers.append(("Connection", "close"))
    if after is not None:
        after(req, response)
    response.headers.append(("X-Request-ID", req.request_id))
    if req.method == "HEAD":  # the headers of the GET answer, with its length, and no body
        response.headers.append(("Content-Length", str(len(response.body))))
        response.body = b""


class Mest:
    """A Mest application: register predictors, then serve it as a WSGI app or with :meth:`run`.

    Args:
        web_framework: The adapter that serves the routes; falcon by default.
        max_body_size: See :class:`Settings`.
        body_timeout: See :class:`Settings`.
        health_live_path: See :class:`Settings`.
        health_ready_path: See :class:`Settings`.
        api_keys: See :class:`Settings`.
        public_paths: See :class:`Settings`.
        cors_origins: See :class:`Settings`.
        metrics_path: See :class:`Settings`.
        openapi_path: See :class:`Settings`.
        docs_path: See :class:`Settings`.
        title: See :class:`Settings`.
        log_format: See :class:`Settings`.
        access_log: See :class:`Settings`.
        log_bodies: See :class:`Settings`.
        stream_time_limit_s: See :class:`Settings`.

    Every setting not passed here is read from its ``MEST_<NAME>`` environment variable, if set.

    Raises:
        ValueError: A setting is invalid (:class:`mest.config.ConfigError`, naming the variable, when the
            value came from the environment).

    Example:
        >>> app = Mest()
        >>> app.add_inference_handler(MyPredictor(), "/api/v1/predict")   # doctest: +SKIP
        >>> app.run()                                                      # doctest: +SKIP
    """

    _explicit_arguments: frozenset[str]

    @track_explicit_arguments
    def __init__(
        self,
        web_framework: WebFramework | None = None,
        *,
        max_body_size: int = Settings.max_body_size,
        body_timeout: float = Settings.body_timeout,
        health_live_path: str | None = Settings.health_live_path,
        health_ready_path: str | None = Settings.health_ready_path,
        api_keys: Iterable[str] = Settings.api_keys,
        public_paths: Iterable[str] | None = Settings.public_paths,
        cors_origins: Iterable[str] = Settings.cors_origins,
        metrics_path: str | None = Settings.metrics_path,
        openapi_path: str | None = Settings.openapi_path,
        docs_path: str | None = Settings.docs_path,
        title: str = Settings.title,
        log_format: Literal["text", "json"] = Settings.log_format,
        access_log: bool = Settings.access_log,
        log_bodies: bool = Settings.log_bodies,
        stream_time_limit_s: float | None = Settings.stream_time_limit_s,
    ) -> None:
        self.settings = Settings(
            max_body_size=max_body_size,
            body_timeout=body_timeout,
            health_live_path=health_live_path,
            health_ready_path=health_ready_path,
            api_keys=api_keys,  # type: ignore[arg-type]  # any iterable; __post_init__ makes it a tuple
            public_paths=public_paths,  # type: ignore[arg-type]
            cors_origins=cors_origins,  # type: ignore[arg-type]
            metrics_path=metrics_path,
            openapi_path=openapi_path,
            docs_path=docs_path,
            title=title,
            log_format=log_format,
            access_log=access_log,
            log_bodies=log_bodies,
            stream_time_limit_s=stream_time_limit_s,
        )
        self.settings = apply_environment(self.settings, explicit=self._explicit_arguments)
        self._access = AccessPolicy(
            api_keys=self.settings.api_keys,
            public_paths=self.settings.public_paths,
            cors_origins=self.settings.cors_origins,
            health_paths=(self.settings.health_live_path, self.settings.health_ready_path),
            methods_of=lambda path: self._routes.get(path, {}).keys(),
        )
        self._model_of: dict[str, Pipeline] = {}
        self._observability = Observability(
            self.model_of,
            metrics=self.settings.metrics_path is not None,
            access_log=self.settings.access_log,
            log_format=self.settings.log_format,
            log_bodies=self.settings.log_bodies,
        )
        self._framework = web_framework if web_framework is not None else _default_framework()
        if not isinstance(self._framework, WebFramework):
            raise TypeError("web_framework must be an instance of mest.webframeworks.WebFramework")
        self._routes: dict[str, dict[str, Handler]] = {}
        self._implicit_heads: set[str] = set()
        self._repeats = RepeatFilter()
        self._pipelines: dict[str, Pipeline] = {}
        self._wsgi: WSGIApplication | None = None
        self._connection = ConnectionControl(self.settings.body_timeout)
        self._build_lock = threading.Lock()
        self._request_hooks: list[Callable[[Request], None]] = []
        self._openai = openai.OpenAIEndpoints(lambda: self.pipelines)
        if self.settings.health_live_path:
            self._add_endpoint("GET", self.settings.health_live_path, self._live)
        if self.settings.health_ready_path:
            self._add_endpoint("GET", self.settings.health_ready_path, self._ready)
        metrics = self._observability.metrics
        self._statistics = metrics.statistics if metrics is not None else None
        for method, path, handler in v2.server_endpoints(self, self._statistics):
            self._add_endpoint(method, path, handler)
        if self.settings.metrics_path:
            self._add_endpoint("GET", self.settings.metrics_path, self._observability.serve_metrics)
        for method, path, handler in openapi.endpoints(self):
            self._add_endpoint(method, path, handler)

    # -- registration ---------------------------------------------------------------------------------

    def add_inference_handler(
        self,
        predictor: PredictorBase,
        route: str,
        *,
        name: str | None = None,
        version: str | None = None,
        max_batch_size: int = 1,
        max_batch_delay_ms: float = 5.0,
        max_queue: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Serve ``predictor`` with ``POST route``.

        Args:
            predictor: An instance of a :class:`~mest.predictors.PredictorBase` subclass.
            route: The URL path, e.g. ``"/api/v1/predict"``.
            name: The model's name (metrics, logs, Open Inference Protocol). Default: the route's segments
                joined by ``-`` (``/api/v1/predict`` → ``api-v1-predict``).
            version: Optional model version; several versions of one name may be registered.
            max_batch_size: Above 1, ``infer`` receives a list of up to this many processed inputs and
                must return a list of the same length (see docs/batching.md).
            max_batch_delay_ms: Longest time a request waits for its batch to fill.
            max_queue: Requests allowed to wait for the model; further ones get 503 with ``Retry-After``.
            timeout_s: Requests not answered in time get 504; those still queued never reach the model.

        Raises:
            TypeError: ``predictor`` is not a usable predictor (the message shows the correct usage).
            ValueError: Invalid or already-registered route, name, or settings.
        """
        _check_predictor(predictor)
        v2.declared_tensors(predictor, "inputs")  # a bad declaration must fail before anything is registered
        v2.declared_tensors(predictor, "outputs")
        openai.declared_kinds(predictor)
        if not isinstance(route, str) or not _ROUTE_RE.fullmatch(route):
            raise ValueError(
                f"Invalid route {route!r}: use an absolute path of URL-safe segments, like '/api/v1/predict'."
            )
        if route in self._routes:
            raise ValueError(f"Route {route!r} is already registered; each route serves one handler.")
        name = _derive_name(route) if name is None else name
        _check_name(name, version)
        for other in self._pipelines.values():
            if (other.config.name, other.config.version) == (name, version):
                label = name if version is None else f"{name} version {version}"
                raise ValueError(f"A model named {label!r} is already registered at {other.config.route!r}.")
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must be >= 0, got {max_batch_delay_ms!r}")
        if max_queue is not None and (not isinstance(max_queue, int) or max_queue < 1):
            raise ValueError(f"max_queue must be an integer >= 1 or None, got {max_queue!r}")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s!r}")
        config = HandlerConfig(
            route=route,
            name=name,
            version=version,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=float(max_batch_delay_ms),
            max_queue=max_queue,
            timeout_s=timeout_s,
            stream_time_limit_s=self.settings.stream_time_limit_s,
        )
        pipeline = self._new_pipeline(predictor, config)
        self._pipelines[route] = pipeline
        self._add_endpoint("POST", route, pipeline)
        self._model_of[route] = pipeline
        self._add_protocol_endpoints(pipeline)

    def _add_protocol_endpoints(self, pipeline: Pipeline) -> None:
        """The protocol endpoints of a new registration: V2, Triton's generate, OpenAI's (if declared)."""
        for method, path, handler in v2.model_endpoints(self, pipeline, self._statistics):
            self._add_endpoint(method, path, handler)
            self._model_of[path] = pipeline
        for method, path, handler in generate.model_endpoints(pipeline, lambda: self.pipelines):
            self._add_endpoint(method, path, handler)
            self._model_of[path] = pipeline
        for method, path, handler in self._openai.new_endpoints(pipeline):
            self._add_endpoint(method, path, handler)

    def _new_pipeline(self, predictor: PredictorBase, config: HandlerConfig) -> Pipeline:
        """The predictor's pipeline, with the metrics observers when metrics are on. Its queue is made first:
        the metrics read the queue's depth, the pipeline hands the metrics what the queue answered."""
        queue = new_queue(predictor, config)
        metrics = self._observability.model(
            config.name, config.version, batched=config.max_batch_size > 1, queue_depth=lambda: queue.queue_depth
        )
        return Pipeline(predictor, config, queue=queue, stage_observer=metrics, stream_observer=metrics)

    def add_endpoint(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``handler`` at ``method path`` with the app's request ids, access control, errors and metrics.

        For protocol extensions (such as the model repository's, :mod:`mest.repository`).

        Raises:
            ValueError: ``method path`` is already registered.
        """
        self._add_endpoint(method, path, handler)

    def add_request_hook(self, hook: Callable[[Request], None]) -> None:
        """Call ``hook(req)`` before every request's handler, after access control; it may raise a MestError
        (answered as usual). Used by the model repository to refuse requests to unloaded models."""
        self._request_hooks.append(hook)

    def _add_endpoint(self, method: str, path: str, handler: Handler) -> None:
        methods = self._routes.setdefault(path, {})
        if method in methods:
            raise ValueError(f"{method} {path} is already registered.")
        wrapped = self._wrap(handler, path, method)
        methods[method] = wrapped
        if self._wsgi is not None:  # already serving: the adapter learns new routes at once
            self._framework.add_route(method, path, wrapped)
        if method == "GET" and "HEAD" not in methods:
            # RFC 9110 §9.3.2: HEAD answers as GET, without the body (probes and load balancers send it).
            self._implicit_heads.add(path)
            self._add_endpoint("HEAD", path, handler)

    @property
    def pipelines(self) -> list[Pipeline]:
        """The registered predictors' pipelines, in registration order."""
        return list(self._pipelines.values())

    def routes(self) -> list[tuple[str, str]]:
        """Every ``(method, path)`` the app serves, in registration order (HEAD, which every GET route
        answers, is not listed)."""
        heads = self._implicit_heads
        return [
            (method, path)
            for path, methods in self._routes.items()
            for method in methods
            if method != "HEAD" or path not in heads
        ]

    def model_of(self, path: str) -> Pipeline | None:
        """The registered model a path belongs to (its own route or a protocol endpoint), if any."""
        return self._model_of.get(path)

    def is_public(self, path: str) -> bool:
        """Whether ``path`` is served without an API key (always, when ``api_keys`` is empty)."""
        return self._access.is_public(path)

    # -- request handling -----------------------------------------------------------------------------

    def _wrap(self, handler: Handler, path: str | None = None, method: str | None = None) -> Handler:
        """Give ``handler`` a request id, the body limit, access control, error translation, a rendered
        body, metrics and an access-log line. ``path`` and ``method`` are the endpoint's route and method
        (``None`` for the not-found fallback)."""
        max_body_size = self.settings.max_body_size
        drain_bytes = drain_limit(max_body_size)
        # Decided once here; both are None (nothing runs per request) unless api_keys or cors_origins is set.
        before = self._access.before(path)
        after = self._access.after()
        observer = self._observability.endpoint(method, path)  # None with metrics and access log off
        hooks = self._request_hooks  # the live list: hooks added later apply too

        def endpoint(req: Request) -> Response:
            started = perf_counter()
            if observer is not None:
                observer.begin()
            client_id = req.headers.get("x-request-id")
            req.request_id = (
                client_id if client_id and _REQUEST_ID_RE.fullmatch(client_id) else new_request_id()
            )
            req.max_body_size = max_body_size
            try:
                early = before(req) if before is not None else None
                if early is None:
                    for hook in hooks:
                        hook(req)
                response = render(early if early is not None else handler(req))
            except MestError as error:
                response = self._error_response(error, req, path)
            except Exception as exc:
                self._log_fault(logging.ERROR, "unhandled error", req, path, exc, exc_info=exc)
                response = self._error_response(MestError("Internal server error."), req, path, logged=True)
            except BaseException:  # the worker is being stopped (SystemExit, GreenletExit): no response
                if observer is not None:
                    observer.abort()
                raise
            _complete(req, response, after, drain_bytes)
            if observer is not None:
                observer.end(req, response, perf_counter() - started)
            return response

        return endpoint

    def _error_response(
        self, error: MestError, req: Request, path: str | None, *, logged: bool = False
    ) -> Response:
        status = int(error.status)
        if status >= 500 and not logged:
            cause = error.__cause__
            text = f"{status} {error.message}"
            if cause is not None or status == 500:
                self._log_fault(logging.ERROR, text, req, path, error, exc_info=cause or error)
            else:
                self._log_fault(logging.WARNING, text, req, path, error)
        return render(Response(error_body(error, req.request_id), status, error.headers))

    def _log_fault(
        self, level: int, text: str, req: Request, path: str | None, error: BaseException,
        exc_info: BaseException | None = None,
    ) -> None:
        """Log a server fault: the first of its kind in full, repeats counted (observability/_repeats.py)."""
        repeats = self._repeats.check(fault_key(path, error))
        if repeats is None:
            return
        extra = {"request_id": req.request_id}
        if repeats == 0:
            logger.log(
                level, "%s in %s %s [request_id=%s]", text, req.method, req.path, req.request_id,
                exc_info=exc_info, extra=extra,
            )
        else:
            logger.log(
                level, "%s in %s %s [request_id=%s]: %d times since it was last logged (not logged each time; "
                "the metrics count every one)", text, req.method, req.path, req.request_id, repeats, extra=extra,
            )

    def _fallback(self, req: Request) -> Response:
        methods = self._routes.get(req.path)
        if methods:
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowed(
                f"Method {req.method} is not allowed on this route; allowed: {allowed}.",
                headers={"Allow": allowed},
            )
        if req.path.startswith("/v2/models/"):
            raise NotFound(v2.unknown_model_message(req.path, self.pipelines))
        raise NotFound(f"No route matches {req.path[:200]!r}.")

    def _live(self, req: Request) -> Response:
        return Response({"status": "alive"})

    def _ready(self, req: Request) -> Response:
        models = {}
        for pipeline in self._pipelines.values():
            ok = pipeline.ensure_setup()
            key = pipeline.config.name if pipeline.config.version is None else (
                f"{pipeline.config.name}:{pipeline.config.version}"
            )
            models[key] = "ready" if ok else "setup failed (see the server log)"
        if all(state == "ready" for state in models.values()):
            return Response({"status": "ready", "models": models})
        raise ServiceUnavailable("Not ready: a model's setup failed.", detail={"models": models})

    def setup(self) -> bool:
        """Run every predictor's ``setup`` in this process now (otherwise done before the first request).

        Returns:
            Whether every predictor is ready.
        """
        return all([pipeline.ensure_setup() for pipeline in self._pipelines.values()])

    # -- serving --------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI entry point (``gunicorn app:app``)."""
        wsgi = self._wsgi or self._build_wsgi()
        return wsgi(environ, self._connection(environ, start_response))

    def _build_wsgi(self) -> WSGIApplication:
        """Hand every route to the adapter, once, on the first request (so adapters see the final table)."""
        with self._build_lock:
            if self._wsgi is None:
                framework = self._framework
                for path, methods in self._routes.items():
                    for method, handler in methods.items():
                        framework.add_route(method, path, handler)
                framework.set_fallback(self._wrap(self._fallback))
                self._wsgi = framework.wsgi_app()
            return self._wsgi

    def run(self, host: str | None = None, port: int | None = None) -> None:
        """Start the development server (threaded) and block until Ctrl-C.

        Args:
            host: Interface to bind; default ``MEST_HOST`` from the environment, else ``127.0.0.1``.
            port: Port to bind; default ``MEST_PORT`` from the environment, else ``5000`` (``0`` picks a free
                one; the URL printed says which).

        Not for production: use gunicorn (``gunicorn -k gevent -w 4 app:app``). When the module calling
        ``run()`` is being imported by gunicorn, ``run()`` returns at once so the seed's ``app.py`` works
        unchanged under both.
        """
        if "gunicorn.arbiter" in sys.modules:
            logger.info("app.run() ignored: this app is being served by gunicorn")
            return
        loader = sys.modules.get("mest.server.loader")
        if loader is not None and loader.is_loading():
            logger.info("app.run() ignored: this app is being loaded by the mest command")
            return
        from .server.dev import serve

        configure_logging(self.settings.log_format)  # before the dev server's own default configuration
        if host is None:
            host = os.environ.get("MEST_HOST", "127.0.0.1")
        if port is None:
            raw_port = os.environ.get("MEST_PORT", "5000")
            try:
                port = int(raw_port)
            except ValueError:
                raise ValueError(f"MEST_PORT must be a port number, got {raw_port!r}") from None
        serve(self, host=host, port=port)
