"""Mest's Prometheus metrics: families, label children bound once per process, and the exposition.

Label children are bound when a process serves its first request (after gunicorn forks, after multiprocess
mode is chosen) and then reached by attribute, so a request costs a few ``inc``/``observe`` calls and no label
look-up. docs/observability.md lists every metric.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._process import PROCESS
from . import _multiprocess
from ._prometheus_fast import adder_of as _adder_of
from ._prometheus_fast import observer_of as _observer_of
from ._prometheus_fast import setter_of as _setter_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS",
    "STAGES",
    "EndpointMetrics",
    "Metrics",
    "ModelMetrics",
    "ModelStatistics",
]

#: Seconds: sub-millisecond (a cached or tiny model) to a minute (a large model on a cold start).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
#: Requests per ``infer`` call.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: The values of the ``stage`` label of ``mest_stage_duration_seconds``.
STAGES = ("queue_wait", "pre_process", "infer", "post_process")
UNMATCHED_ROUTE = "(unmatched)"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Families:
    """The metric families of one app in one process."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "mest_requests", "Requests answered, by endpoint and HTTP status.",
            ["model", "route", "method", "status"], registry=registry,
        )
        self.duration = Histogram(
            "mest_request_duration_seconds",
            "Time from Mest receiving a request to its response being ready (all stages, errors included).",
            ["model", "route", "method"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            "mest_requests_in_flight", "Requests being handled right now.",
            ["model", "route", "method"], multiprocess_mode="livesum", registry=registry,
        )
        self.stage = Histogram(
            "mest_stage_duration_seconds",
            "Time per pipeline stage: queue_wait and pre_process and post_process per request, infer per batch.",
            ["model", "version", "stage"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.batch_size = Histogram(
            "mest_batch_size", "Requests per infer call.",
            ["model", "version"], buckets=BATCH_SIZE_BUCKETS, registry=registry,
        )
        self.queue_depth = Gauge(
            "mest_queue_depth", "Requests waiting for the model (not counting the batch being run).",
            ["model", "version"], multiprocess_mode="livesum", registry=registry,
        )
        self.rejections = Counter(
            "mest_rejections",
            "Requests refused without an answer from the model: queue_full (503), not_ready (503), timeout (504).",
            ["model", "version", "reason"], registry=registry,
        )
        self.stream_first_item = Histogram(
            "mest_stream_time_to_first_item_seconds",
            "Time from a streamed request's arrival to its first item being ready.",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.stream_items = Counter(
            "mest_stream_items", "Items of streamed responses handed to the server.",
            ["model", "version"], registry=registry,
        )
        self.streams = Counter(
            "mest_streams",
            "Streamed responses ended, by outcome: completed, client_closed (cut by the client), error, time_limit.",
            ["model", "version", "outcome"], registry=registry,
        )
        self.failures = Counter(
            "mest_failures",
            "Requests whose pre_process (its input), infer or post_process raised.",
            ["model", "version", "stage"], registry=registry,
        )
        self.last_inference = Gauge(
            "mest_last_inference_timestamp_seconds",
            "When the model last started a batch (Unix time, the latest over every worker).",
            ["model", "version"], multiprocess_mode="max", registry=registry,
        )
        self.ready = Gauge(
            "mest_model_ready",
            "1 when the model's setup succeeded in every serving process that ran it, else 0.",
            ["model", "version"], multiprocess_mode="livemin", registry=registry,
        )


class EndpointMetrics:
    """The metrics of one endpoint (a method on a route); the fallback endpoint has ``route=None``.

    Its label children are bound on the endpoint's first request in each process, so endpoints nobody calls
    (the docs page's files, say) add no series.
    """

    def __init__(self, metrics: Metrics, method: str | None, route: str | None, model: str | None = None) -> None:
        self._metrics = metrics
        self.method = method
        self.route = route
        self.model = model
        self._pid: int | None = None
        self._children: dict[Any, Any] = {}
        self._labels: tuple[str, str, str] = ("", UNMATCHED_ROUTE, "")
        self._in_flight_add: Callable[[float], None] = _noop
        self._observe: Callable[[float], None] = _noop

    def _bind(self) -> None:
        families = self._metrics.families
        assert families is not None, "Metrics.bind() runs before the first request of a process"
        self._children = {}
        if self.route is not None:
            self._labels = (self.model or "", self.route, self.method or "")
            in_flight = families.in_flight.labels(*self._labels)
            self._in_flight_add = _adder_of(in_flight)
            self._observe = _observer_of(families.duration.labels(*self._labels))
        self._pid = PROCESS.pid

    def begin(self) -> None:
        """A request started; call :meth:`Metrics.bind` first in a process that has not served yet."""
        if self._pid != PROCESS.pid:
            self._bind()
        self._in_flight_add(1)

    def abort(self) -> None:
        """The request ended without a response (the process is going down)."""
        self._in_flight_add(-1)

    def end(self, status: int, seconds: float, method: str) -> None:
        """The request was answered with ``status`` after ``seconds``; ``method`` matters for the fallback."""
        if self.route is None:
            self._end_unmatched(status, seconds, method)
            return
        self._in_flight_add(-1)
        self._observe(seconds)
        inc = self._children.get(status)
        if inc is None:
            families = self._metrics.families
            assert families is not None
            inc = self._children[status] = _adder_of(families.requests.labels(*self._labels, str(status)))
        inc(1)

    def _end_unmatched(self, status: int, seconds: float, method: str) -> None:
        method = method if method in _METHODS else "other"
        key = (method, status)
        children = self._children.get(key)
        if children is None:
            families = self._metrics.families
            assert families is not None
            children = self._children[key] = (
                families.requests.labels("", UNMATCHED_ROUTE, method, str(status)).inc,
                families.duration.labels("", UNMATCHED_ROUTE, method).observe,
            )
        children[0]()
        children[1](seconds)


class ModelMetrics:
    """One registered model's metrics: the pipeline's stage observer (:class:`mest.pipeline.StageObserver`)
    and its stream observer (:class:`mest.streaming.StreamObserver`).

    Args:
        metrics: The app's metrics.
        name: The model's name.
        version: Its version, if any.
        batched: Whether its batches can hold more than one request (only then are batch sizes observed).
        queue_depth: Requests waiting in its queue right now, read before a scrape.
    """

    def __init__(
        self,
        metrics: Metrics,
        name: str,
        version: str | None,
        *,
        batched: bool = False,
        queue_depth: Callable[[], int] | None = None,
    ) -> None:
        self._metrics = metrics
        self.name = name
        self.version = version or ""
        self._batched = batched
        self._read_depth = queue_depth
        self._stages: dict[str, Callable[[float], None]] = {}
        self._batch_size: Callable[[float], None] | None = None
        self._queue_wait: Callable[[float], None] = _noop
        self._infer: Callable[[float], None] = _noop
        self._queue_depth: Callable[[float], None] = _noop
        self._depth_shown = -1
        self._rejections: dict[str, Callable[[], None]] = {}
        self._failures: dict[str, Callable[[], None]] = {}
        self._last_inference: Callable[[float], None] = _noop
        self._families: _Families | None = None
        # Readiness reported before this process's metrics were bound (setup ran before the first request):
        # (pid, ready), shown when they are.
        self._early_ready: tuple[int, bool] | None = None

    def _bind(self, families: _Families) -> None:
        labels = (self.name, self.version)
        self._families = families
        self._stages = {stage: _observer_of(families.stage.labels(*labels, stage)) for stage in STAGES}
        self._queue_wait = self._stages["queue_wait"]
        self._infer = self._stages["infer"]
        # An unbatched model's batches all have size 1: observing that would cost every request for nothing.
        self._batch_size = _observer_of(families.batch_size.labels(*labels)) if self._batched else None
        self._queue_depth = families.queue_depth.labels(*labels).set
        self._last_inference = _setter_of(families.last_inference.labels(*labels))
        self._failures = {}
        self._depth_shown = -1
        self._show_depth(0)
        self._rejections = {}
        # Readiness is reported only by processes that ran the setup (a fresh worker has not loaded the model).
        early = self._early_ready
        if early is not None and early[0] == PROCESS.pid:
            self.setup_finished(early[1])

    def _bound(self) -> bool:
        if self._metrics.pid != PROCESS.pid:
            return False
        return self._families is not None

    # -- StageObserver ----------------------------------------------------------------------------------

    def stage_finished(self, stage: str, seconds: float) -> None:
        """``pre_process`` or ``post_process`` took ``seconds``."""
        observe = self._stages.get(stage)
        if observe is None or self._metrics.pid != PROCESS.pid:
            return
        observe(seconds)

    def batch_ran(self, size: int, queue_waits: Sequence[float], infer_seconds: float, queue_depth: int) -> None:
        """A batch ran: its size, each request's queue wait, ``infer``'s time and the depth it left behind.

        The queue depth is written here (only when it changed), so a busy worker's gauge lags by at most one
        batch; the worker answering a scrape refreshes its own first."""
        if self._metrics.pid != PROCESS.pid:
            return
        if self._batch_size is not None:
            self._batch_size(size)
        self._infer(infer_seconds)
        self._last_inference(time.time() - infer_seconds)  # when the batch started
        observe = self._queue_wait
        for wait in queue_waits:
            observe(wait)
        if queue_depth != self._depth_shown:
            self._show_depth(queue_depth)

    def rejected(self, reason: str) -> None:
        """A request was refused before the model answered it (``timeout``, ``not_ready``, ``queue_full``)."""
        if not self._bound():
            return
        inc = self._rejections.get(reason)
        if inc is None:
            assert self._families is not None
            inc = self._rejections[reason] = self._families.rejections.labels(
                self.name, self.version, reason
            ).inc
        inc()

    def failed(self, stage: str) -> None:
        """A request failed in ``pre_process``, ``infer`` or ``post_process`` (only failures cost anything)."""
        if not self._bound():
            return
        inc = self._failures.get(stage)
        if inc is None:
            assert self._families is not None
            inc = self._failures[stage] = self._families.failures.labels(self.name, self.version, stage).inc
        inc()

    def setup_finished(self, ready: bool) -> None:
        """The predictor's setup ran in this process."""
        if self._bound():
            assert self._families is not None
            self._families.ready.labels(self.name, self.version).set(1 if ready else 0)
        else:
            self._early_ready = (PROCESS.pid, ready)

    # -- StreamObserver ---------------------------------------------------------------------------------

    def stream_first_item(self, seconds: float) -> None:
        """A stream's first item was ready ``seconds`` after its request arrived."""
        if self._bound():
            assert self._families is not None
            self._families.stream_first_item.labels(self.name, self.version).observe(seconds)

    def stream_items(self, count: int) -> None:
        """``count`` items of a stream were handed to the server."""
        if self._bound():
            assert self._families is not None
            self._families.stream_items.labels(self.name, self.version).inc(count)

    def stream_ended(self, outcome: str) -> None:
        """A stream ended (``completed``, ``client_closed``, ``error`` or ``time_limit``)."""
        if self._bound():
            assert self._families is not None
            self._families.streams.labels(self.name, self.version, outcome).inc()

    # -- scrapes -----------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring this process's gauges up to date (before a scrape)."""
        if self._read_depth is not None and self._bound():
            self._show_depth(self._read_depth())

    def _show_depth(self, depth: int) -> None:
        # Written only when it changes: an idle or lightly loaded model (depth 0) costs nothing per request.
        if depth != self._depth_shown:
            self._depth_shown = depth
            self._queue_depth(depth)


def _noop(_: float) -> None:
    return None


class Metrics:
    """Every metric of one app, bound per process; renders ``/metrics``.

    Args:
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: list[ModelMetrics] = []
        self.pid: int | None = None
        self.families: _Families | None = None
        self._registry: CollectorRegistry | None = None
        self._directory: _multiprocess.MultiprocessDir | None = None

    def endpoint(self, method: str | None, route: str | None, model: str | None = None) -> EndpointMetrics:
        """The metrics of a new endpoint (``route=None``: the not-found fallback)."""
        return EndpointMetrics(self, method, route, model)

    def model(
        self, name: str, version: str | None, *, batched: bool = False, queue_depth: Callable[[], int] | None = None
    ) -> ModelMetrics:
        """The metrics of a newly registered model (arguments as :class:`ModelMetrics`)."""
        model = ModelMetrics(self, name, version, batched=batched, queue_depth=queue_depth)
        with self._lock:
            self._models.append(model)
            if self.families is not None and self.pid == PROCESS.pid:
                model._bind(self.families)
        return model

    def bind(self) -> None:
        """Create this process's families and children (once per process, on its first request)."""
        with self._lock:
            if self.pid == PROCESS.pid:
                return
            directory = _multiprocess.choose()
            if directory is not None:
                _multiprocess.enable(directory)
                registry = None
            else:
                from prometheus_client import CollectorRegistry

                registry = CollectorRegistry()
            families = _Families(registry)
            self._directory = directory
            self._registry = registry
            self.families = families
            self.pid = PROCESS.pid  # before the models: binding one reports the readiness its setup already found
            for model in self._models:
                model._bind(families)

    def _merged(self) -> Any:
        """What a scrape reads: this process's registry, or every worker's files merged (under the lock)."""
        from prometheus_client import CollectorRegistry

        if self.pid != PROCESS.pid:
            self.bind()
        for model in self._models:
            model.refresh()
        directory = self._directory
        if directory is None:
            assert self._registry is not None
            return self._registry
        from prometheus_client.multiprocess import MultiProcessCollector

        with _multiprocess.locked(directory):
            _multiprocess.reap_dead(directory)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, directory.path)  # type: ignore[no-untyped-call]
            # Read now, under the lock: the collector reads the files when collected.
            families = list(registry.collect())
        return _Collected(families)

    def statistics(self) -> dict[tuple[str, str], ModelStatistics]:
        """Every model's totals, summed over the workers as ``/metrics`` sums them, keyed by (name, version)."""
        stats: dict[tuple[str, str], ModelStatistics] = {}
        for family in self._merged().collect():
            for sample in family.samples:
                labels = sample.labels
                if "model" not in labels or "version" not in labels:
                    continue
                key = (labels["model"], labels["version"])
                entry = stats.get(key)
                if entry is None:
                    entry = stats[key] = ModelStatistics()
                entry.add(sample.name, labels, sample.value)
        return stats

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape: ``(body, content type)`` in the format the ``Accept`` header asks for."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._merged()), content_type


class _Collected:
    """Metric families already read, in the shape of a registry (what the exposition encoders take)."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


class ModelStatistics:
    """One model version's totals over every worker (what the V2 statistics extension reports).

    Attributes:
        stages: ``{stage: [count, seconds]}`` of ``mest_stage_duration_seconds`` (``queue_wait``,
            ``pre_process``, ``infer`` per batch, ``post_process``).
        rejected: Requests refused before the model answered (``mest_rejections``).
        failed: Requests whose ``pre_process``, ``infer`` or ``post_process`` raised (``mest_failures``).
        last_inference: Unix time of the last batch started, or 0.
        batch_sizes: ``{bucket upper bound: batches}`` of ``mest_batch_size`` (batched models only).
    """

    __slots__ = ("batch_sizes", "failed", "last_inference", "rejected", "stages")

    def __init__(self) -> None:
        self.stages: dict[str, list[float]] = {stage: [0.0, 0.0] for stage in STAGES}
        self.rejected = 0.0
        self.failed = 0.0
        self.last_inference = 0.0
        self.batch_sizes: dict[float, float] = {}

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        """Fold one sample of Mest's families in."""
        if name == "mest_stage_duration_seconds_count" and labels.get("stage") in self.stages:
            self.stages[labels["stage"]][0] += value
        elif name == "mest_stage_duration_seconds_sum" and labels.get("stage") in self.stages:
            self.stages[labels["stage"]][1] += value
        elif name == "mest_rejections_total":
            self.rejected += value
        elif name == "mest_failures_total":
            self.failed += value
        elif name == "mest_last_inference_timestamp_seconds":
            self.last_inference = max(self.last_inference, value)
        elif name == "mest_batch_size_bucket" and labels.get("le") not in (None, "+Inf"):
            bound = float(labels["le"])
            self.batch_sizes[bound] = self.batch_sizes.get(bound, 0.0) + value
