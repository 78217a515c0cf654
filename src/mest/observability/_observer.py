"""The hooks the app puts around every endpoint: metrics and one access-log line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._process import PROCESS
from ..api import BodyTooLarge, Request, Response
from ._logging import (
    LogFormat,
    access_logger,
    access_record,
    configure_logging,
    describe_body,
    direct_access_sink,
    safe_text,
)
from ._metrics import EndpointMetrics, Metrics, ModelMetrics

__all__ = ["EndpointObserver", "Observability"]

_INFO = logging.INFO
_MODEL_LINE = "%s %s %d %.2fms model=%s batch=%s request_id=%s"
_LINE = "%s %s %d %.2fms request_id=%s"


class Observability:
    """Metrics and access logs of one app; the app asks it for one observer per endpoint and per model.

    Args:
        metrics: Collect metrics (the app serves them when its ``metrics_path`` is set).
        access_log: Log one line per request to the ``mest.access`` logger.
        log_format: ``"text"`` or ``"json"``, for the handler Mest installs when logging is not configured.
        log_bodies: Add the request body (truncated) to each access line.
    """

    def __init__(
        self,
        *,
        metrics: bool = True,
        access_log: bool = True,
        log_format: LogFormat = "text",
        log_bodies: bool = False,
    ) -> None:
        self.metrics = Metrics() if metrics else None
        self.access_log = access_log
        self.log_format = log_format
        self.log_bodies = log_bodies
        self.pid: int | None = None

    def endpoint(
        self, method: str | None, route: str | None, model: str | None = None
    ) -> EndpointObserver | None:
        """The observer of an endpoint (``route=None``: the not-found fallback) of ``model``, if it belongs to
        one; ``None`` if there is nothing to do."""
        if self.metrics is None and not self.access_log:
            return None
        return EndpointObserver(self, method, route, model)

    def model(
        self, name: str, version: str | None, *, batched: bool = False, queue_depth: Callable[[], int] | None = None
    ) -> ModelMetrics | None:
        """The stage and stream observer of a model; ``None`` when metrics are off.

        Args:
            name: The model's name.
            version: Its version, if any.
            batched: Whether its batches can hold more than one request.
            queue_depth: Requests waiting in its queue right now (read before a scrape).
        """
        if self.metrics is None:
            return None
        return self.metrics.model(name, version, batched=batched, queue_depth=queue_depth)

    def process_started(self) -> None:
        """Prepare this process (logging handler, metric children); runs on each process's first request."""
        configure_logging(self.log_format)
        if self.metrics is not None:
            self.metrics.bind()
        self.pid = PROCESS.pid

    def serve_metrics(self, req: Request) -> Response:
        """The ``GET /metrics`` endpoint: Prometheus text format (OpenMetrics if the scraper asks for it)."""
        assert self.metrics is not None
        body, content_type = self.metrics.render(req.headers.get("accept"))
        return Response(body, headers=[("Content-Type", content_type), ("Cache-Control", "no-store")])


class EndpointObserver:
    """Around one endpoint: :meth:`begin` before the handler, :meth:`end` with its response."""

    __slots__ = ("_metrics", "_model", "_obs", "method", "route")

    def __init__(self, obs: Observability, method: str | None, route: str | None, model: str | None) -> None:
        self._obs = obs
        self.method = method
        self.route = route
        self._metrics: EndpointMetrics | None = (
            obs.metrics.endpoint(method, route, model) if obs.metrics is not None else None
        )
        self._model = model

    def begin(self) -> None:
        """A request arrived."""
        obs = self._obs
        if obs.pid != PROCESS.pid:
            obs.process_started()
        if self._metrics is not None:
            self._metrics.begin()

    def abort(self) -> None:
        """The handler was interrupted (``SystemExit``, ``GreenletExit``): no response, no log line."""
        if self._metrics is not None:
            self._metrics.abort()

    def end(self, req: Request, response: Response, seconds: float) -> None:
        """The request was answered."""
        status = response.status
        if self._metrics is not None:
            self._metrics.end(status, seconds, req.method)
        if self._obs.access_log and access_logger.isEnabledFor(_INFO):
            self._log(req, status, seconds)

    def _log(self, req: Request, status: int, seconds: float) -> None:
        if self.route is None:
            method, route = safe_text(req.method, 32), safe_text(req.path)
        else:
            method, route = self.method or req.method, self.route
        latency_ms = seconds * 1000.0
        model = self._model
        batch = req.context.get("batch_size")
        request_id = req.request_id
        args: tuple[object, ...]
        if model is not None:
            msg = _MODEL_LINE
            args = (method, route, status, latency_ms, model, "-" if batch is None else batch, request_id)
        else:
            msg = _LINE
            args = (method, route, status, latency_ms, request_id)
        body: str | None = None
        if self._obs.log_bodies:
            body = _read_body(req)
            msg += " body=%s"
            args += (body,)
        sink = direct_access_sink()
        if sink is not None and not sink[2]:  # the line needs no separate fields
            sink[0].add_access(sink[1], time.time(), msg, args, None)
            return
        fields = {
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(latency_ms, 3),
            "model": model,
            "batch_size": batch,
            "request_id": request_id,
        }
        if body is not None:
            fields["body"] = body
        if sink is not None:
            sink[0].add_access(sink[1], time.time(), msg, args, fields)
            return
        # What .info() does after its level check, minus the stack walk that finds the caller's file and line (a
        # fifth of the cost of a line, and always this function anyway) and the per-record system calls.
        access_logger.handle(access_record(msg, args, fields))


def _read_body(req: Request) -> str:
    try:
        return describe_body(req.body)
    except BodyTooLarge:
        return "<larger than max_body_size>"
    except Exception:  # a broken client stream must not turn into a failed log call
        return "<unreadable>"
