"""``Mest``: the registry of predictors, the settings, and the WSGI callable that serves them."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import _health, openapi
from ._connection import ConnectionControl
from ._hosting import served_elsewhere
from ._registration import check_registration
from ._wrap import EndpointWrapper
from .api import Request, Response
from .endpoints import Endpoint, Operation, Responder
from .errors import MethodNotAllowed, NotFound
from .observability import Observability, configure_logging, metrics_endpoint
from .pipeline import ModelConfig, Pipeline, new_queue
from .predictors import PredictorBase
from .protocol import generate, openai, v2
from .security import AccessPolicy
from .settings import Settings
from .webframeworks.base import WebFramework, WSGIApplication

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on; never imported at run time

    from .settings import SettingsArguments

__all__ = ["Mest", "Settings"]

logger = logging.getLogger("mest")



def _predict_operation(pipeline: Pipeline) -> Operation:
    config = pipeline.config
    label = config.name if config.version is None else f"{config.name} version {config.version}"
    request, response = pipeline.request_schema, pipeline.response_schema
    return openapi.predict_operation(
        pipeline.predictor,
        label,
        request.adapter if request is not None else None,
        response.adapter if response is not None else None,
    )


def _default_framework() -> WebFramework:
    from .webframeworks.falcon import FalconFramework

    return FalconFramework()




class Mest:
    """A Mest application: register predictors, then serve it as a WSGI app or with :meth:`run`.

    Args:
        web_framework: The adapter that serves the routes; falcon by default.
        **settings: Any field of :class:`Settings` (``max_body_size=...``, ``api_keys=[...]``), by keyword.

    Every setting not passed here is read from its ``MEST_<NAME>`` environment variable, if set.

    Raises:
        TypeError: A keyword argument is no setting.
        ValueError: A setting is invalid (:class:`mest.config.ConfigError`, naming the variable, when the
            value came from the environment).

    Example:
        >>> app = Mest()
        >>> app.add_inference_handler(MyPredictor(), "/api/v1/predict")   # doctest: +SKIP
        >>> app.run()                                                      # doctest: +SKIP
    """

    def __init__(self, web_framework: WebFramework | None = None, **settings: Unpack[SettingsArguments]) -> None:
        # Typed keyword arguments (PEP 692): IDEs and mypy know each setting's name and type, while the
        # defaults stay in Settings alone, and the arguments given are exactly the keys passed (explicit
        # arguments win over MEST_* variables).
        self.settings = Settings.from_arguments(settings)
        self._access = AccessPolicy(
            api_keys=self.settings.api_keys,
            public_paths=self.settings.public_paths,
            cors_origins=self.settings.cors_origins,
            health_paths=(self.settings.health_live_path, self.settings.health_ready_path),
            methods_of=lambda path: self._routes.get(path, {}).keys(),
        )
        self._framework = web_framework if web_framework is not None else _default_framework()
        if not isinstance(self._framework, WebFramework):
            raise TypeError("web_framework must be an instance of mest.webframeworks.WebFramework")
        self._endpoints: list[Endpoint] = []  # registration order; the implicit HEAD of each GET left out
        self._routes: dict[str, dict[str, Responder]] = {}  # wrapped, by path then method: what adapters get
        self._pipelines: dict[str, Pipeline] = {}
        self._not_found: list[tuple[str, Callable[[str], str]]] = []  # a provider's 404 wording, by prefix
        self._request_hooks: list[Callable[[Request], None]] = []
        self._observability = Observability(
            metrics=self.settings.metrics_path is not None,
            access_log=self.settings.access_log,
            log_format=self.settings.log_format,
            log_bodies=self.settings.log_bodies,
        )
        self._wrapper = EndpointWrapper(
            self.settings.max_body_size, self._access, self._observability, self._request_hooks
        )
        self._wsgi: WSGIApplication | None = None
        self._connection = ConnectionControl(self.settings.body_timeout)
        self._build_lock = threading.Lock()
        self._openai = openai.OpenAIEndpoints(self._registered)
        metrics = self._observability.metrics
        self._statistics = metrics.statistics if metrics is not None else None
        self._add_all(self._service_endpoints())

    def _service_endpoints(self) -> list[Endpoint]:
        """The endpoints of the service itself, as the settings ask: health, V2's server paths, metrics, docs."""
        settings = self.settings
        found = _health.endpoints(settings.health_live_path, settings.health_ready_path, self._registered)
        found += v2.server_endpoints(self._registered, self._serves, self._statistics)
        self._not_found.append(v2.not_found(self._registered))
        if settings.metrics_path:
            found.append(metrics_endpoint(settings.metrics_path, self._observability.serve_metrics))
        source = openapi.DocumentSource(
            self.endpoints, title=settings.title, secured=bool(settings.api_keys), is_public=self.is_public
        )
        found += openapi.endpoints(source, settings.openapi_path, settings.docs_path)
        return found

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
        name = check_registration(
            predictor, route, name=name, version=version, max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms, max_queue=max_queue, timeout_s=timeout_s, routes=self._routes,
            models=((p.config.name, p.config.version, p.config.route) for p in self._pipelines.values()),
        )
        config = ModelConfig(
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
        own = Endpoint(
            "POST", route, pipeline, model=config.name, version=version, operation=_predict_operation(pipeline)
        )
        self._add_all([
            own,
            *v2.model_endpoints(self._registered, pipeline, self._statistics),
            *generate.model_endpoints(pipeline, self._registered),
            *self._openai.new_endpoints(pipeline),
        ])
        self._pipelines[route] = pipeline

    def _new_pipeline(self, predictor: PredictorBase, config: ModelConfig) -> Pipeline:
        """The predictor's pipeline, with the metrics observers when metrics are on. Its queue is made first:
        the metrics read the queue's depth, the pipeline hands the metrics what the queue answered."""
        queue = new_queue(predictor, config)
        metrics = self._observability.model(
            config.name, config.version, batched=config.max_batch_size > 1, queue_depth=lambda: queue.queue_depth
        )
        return Pipeline(predictor, config, queue=queue, stage_observer=metrics, stream_observer=metrics)

    def add_endpoint(
        self, method: str, path: str, responder: Responder, *, operation: Operation | None = None
    ) -> None:
        """Serve ``responder`` at ``method path`` with the app's request ids, access control, errors and metrics.

        For protocol extensions (such as the model repository's, :mod:`mest.repository`).

        Args:
            method: The HTTP method.
            path: The exact path.
            responder: Answers the request (``Request`` in, ``Response`` out).
            operation: What the OpenAPI document says about it (generic when ``None``).

        Raises:
            ValueError: ``method path`` is already registered.
        """
        self._add_all([Endpoint(method.upper(), path, responder, operation=operation)])

    def add_request_hook(self, hook: Callable[[Request], None]) -> None:
        """Call ``hook(req)`` before every request to a model's endpoint (its own route and its protocol
        endpoints), after access control; it may raise a MestError (answered as usual). Used by the model
        repository to refuse requests to unloaded models."""
        self._request_hooks.append(hook)

    def _add_all(self, endpoints: list[Endpoint]) -> None:
        """Register endpoints; none of them if one is taken (so a failed registration changes nothing)."""
        for endpoint in endpoints:
            if endpoint.method in self._routes.get(endpoint.path, {}):
                raise ValueError(f"{endpoint.method} {endpoint.path} is already registered.")
        for endpoint in endpoints:
            self._endpoints.append(endpoint)
            self._route(endpoint.method, endpoint)
            if endpoint.method == "GET" and "HEAD" not in self._routes[endpoint.path]:
                # RFC 9110 §9.3.2: HEAD answers as GET, without the body (probes and load balancers send it).
                self._route("HEAD", endpoint)

    def _route(self, method: str, endpoint: Endpoint) -> None:
        wrapped = self._wrapper.wrap(endpoint, endpoint.responder)
        self._routes.setdefault(endpoint.path, {})[method] = wrapped
        if self._wsgi is not None:  # already serving: the adapter learns new routes at once
            self._framework.add_route(method, endpoint.path, wrapped)

    def _serves(self, method: str, path: str) -> bool:
        return method in self._routes.get(path, {})

    def _registered(self) -> list[Pipeline]:
        """The registrations, asked for by the providers when a request needs them (the list grows)."""
        return list(self._pipelines.values())

    @property
    def pipelines(self) -> list[Pipeline]:
        """The registered predictors' pipelines, in registration order."""
        return list(self._pipelines.values())

    def pipeline(self, name: str, version: str | None = None) -> Pipeline | None:
        """The registration of model ``name`` at ``version`` (``None``: its default version), if any."""
        same = [p for p in self._pipelines.values() if p.config.name == name]
        if version is not None:
            same = [p for p in same if p.config.version == version]
        return v2.default_version(same) if same else None

    def endpoints(self) -> list[Endpoint]:
        """Every endpoint the app serves, in registration order (the HEAD of each GET route not listed)."""
        return list(self._endpoints)

    def routes(self) -> list[tuple[str, str]]:
        """Every ``(method, path)`` the app serves, in registration order (HEAD, which every GET route
        answers, is not listed)."""
        return [(endpoint.method, endpoint.path) for endpoint in self._endpoints]

    def is_public(self, path: str) -> bool:
        """Whether ``path`` is served without an API key (always, when ``api_keys`` is empty)."""
        return self._access.is_public(path)

    # -- request handling -----------------------------------------------------------------------------

    def _fallback(self, req: Request) -> Response:
        methods = self._routes.get(req.path)
        if methods:
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowed(
                f"Method {req.method} is not allowed on this route; allowed: {allowed}.",
                headers={"Allow": allowed},
            )
        for prefix, message in self._not_found:
            if req.path.startswith(prefix):
                raise NotFound(message(req.path))
        raise NotFound(f"No route matches {req.path[:200]!r}.")

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
                    for method, responder in methods.items():
                        framework.add_route(method, path, responder)
                framework.set_fallback(self._wrapper.wrap(None, self._fallback))
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
        if served_elsewhere():
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
