"""Mest's Prometheus metrics: families, label children bound once per process, and the exposition.

Label children are bound when a process serves its first request (after gunicorn forks, after multiprocess
mode is chosen) and then reached by attribute, so a request costs a few ``inc``/``observe`` calls and no label
look-up. docs/observability.md lists every metric.
"""

from __future__ import annotations

import struct
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._process import PROCESS
from . import _multiprocess

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..pipeline import Pipeline

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS",
    "STAGES",
    "EndpointMetrics",
    "Metrics",
    "ModelMetrics",
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

    def __init__(self, metrics: Metrics, method: str | None, route: str | None) -> None:
        self._metrics = metrics
        self.method = method
        self.route = route
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
            pipeline = self._metrics.model_of(self.route)
            self._labels = (pipeline.config.name if pipeline is not None else "", self.route, self.method or "")
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
    """One registered model's metrics: the pipeline's stage observer, and the batcher's observer.

    Implements :class:`mest.pipeline.StageObserver` itself; :attr:`batch_observer` implements
    :class:`mest.batching.BatchObserver`.
    """

    def __init__(self, metrics: Metrics, name: str, version: str | None) -> None:
        self._metrics = metrics
        self.name = name
        self.version = version or ""
        self.pipeline: Pipeline | None = None
        self.batch_observer = _BatchObserver(self)
        self._stages: dict[str, Callable[[float], None]] = {}
        self._batch_size: Callable[[float], None] = _noop
        self._queue_wait: Callable[[float], None] = _noop
        self._queue_depth: Callable[[float], None] = _noop
        self._depth_shown = -1
        self._rejections: dict[str, Callable[[], None]] = {}
        self._families: _Families | None = None

    def _bind(self, families: _Families) -> None:
        labels = (self.name, self.version)
        self._families = families
        self._stages = {stage: _observer_of(families.stage.labels(*labels, stage)) for stage in STAGES}
        self._queue_wait = self._stages["queue_wait"]
        pipeline = self.pipeline
        batched = pipeline is not None and pipeline.config.max_batch_size > 1
        # An unbatched model's batches all have size 1: observing that would cost every request for nothing.
        self._batch_size = _observer_of(families.batch_size.labels(*labels)) if batched else _noop
        self._queue_depth = families.queue_depth.labels(*labels).set
        self._depth_shown = -1
        self._show_depth(0)
        self._rejections = {}
        # Readiness is reported only by processes that ran the setup (a fresh worker has not loaded the model).
        if pipeline is not None and (pipeline.is_ready or pipeline.setup_error is not None):
            self.setup_finished(pipeline.is_ready)

    def _bound(self) -> bool:
        if self._metrics.pid != PROCESS.pid:
            return False
        return self._families is not None

    # -- StageObserver ----------------------------------------------------------------------------------

    def stage_finished(self, stage: str, seconds: float) -> None:
        """``pre_process``, ``infer`` (per batch) or ``post_process`` took ``seconds``."""
        observe = self._stages.get(stage)
        if observe is None or self._metrics.pid != PROCESS.pid:
            return
        observe(seconds)

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

    def setup_finished(self, ready: bool) -> None:
        """The predictor's setup ran in this process."""
        if self._bound():
            assert self._families is not None
            self._families.ready.labels(self.name, self.version).set(1 if ready else 0)

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

    # -- from the batcher ------------------------------------------------------------------------------

    def batch_started(self, size: int, queue_waits: Sequence[float]) -> None:
        """A batch left the queue. The queue depth is written here (only when it changed), so a busy worker's
        gauge lags by at most one batch; the worker answering a scrape refreshes its own first."""
        if self._metrics.pid != PROCESS.pid:
            return
        self._batch_size(size)
        observe = self._queue_wait
        for wait in queue_waits:
            observe(wait)
        pipeline = self.pipeline
        if pipeline is not None:
            self._show_depth(pipeline.batcher.queue_depth)

    def refresh(self) -> None:
        """Bring this process's gauges up to date (before a scrape)."""
        if self.pipeline is not None and self._bound():
            self._show_depth(self.pipeline.batcher.queue_depth)

    def _show_depth(self, depth: int) -> None:
        # Written only when it changes: an idle or lightly loaded model (depth 0) costs nothing per request.
        if depth != self._depth_shown:
            self._depth_shown = depth
            self._queue_depth(depth)


class _BatchObserver:
    """What the batcher reports. Its ``timeout`` rejections are left out: the pipeline counts every 504 once,
    including those the batcher never sees (a deadline passed during ``pre_process``)."""

    __slots__ = ("_model",)

    def __init__(self, model: ModelMetrics) -> None:
        self._model = model

    def batch_started(self, size: int, queue_waits: Sequence[float]) -> None:
        self._model.batch_started(size, queue_waits)

    def rejected(self, reason: str) -> None:
        if reason != "timeout":
            self._model.rejected(reason)


def _noop(_: float) -> None:
    return None


# The request path calls these instead of the children's public ``observe``/``inc``: the same values change in
# the same way, without the per-call checks (observability, exemplars) and the bucket loop, which together
# cost more than the update itself. Falls back to the public methods if prometheus_client's internals differ.


#: A value, and where its total lives in this process's file: ``(value, mmap or None, position)``.
_Slot = tuple[Any, Any, int]


def _observer_of(child: Any) -> Callable[[float], None]:
    """``child.observe`` of a histogram child: a bisect and two value updates, in one call."""
    try:
        bounds = list(child._upper_bounds)
        buckets = list(child._buckets)
        total = child._sum
    except AttributeError:
        observe: Callable[[float], None] = child.observe
        return observe
    if len(bounds) != len(buckets) or bounds[-1] != float("inf"):
        observe = child.observe
        return observe
    slots = [_slot(value) for value in (total, *buckets)]
    if all(slot is not None for slot in slots):
        return _direct_observer(bounds, slots)  # type: ignore[arg-type]
    add_to_sum = _value_adder(total)
    bucket_adders = [_value_adder(bucket) for bucket in buckets]

    def fast_observe(amount: float) -> None:
        add_to_sum(amount)
        bucket_adders[bisect_left(bounds, amount)](1)  # the first bucket whose bound is >= amount

    return fast_observe


def _direct_observer(bounds: list[float], slots: list[_Slot]) -> Callable[[float], None]:
    """A histogram's observe in one call: the sum's and one bucket's new totals (written into their file slots
    in multiprocess mode)."""
    total, mapping, position = slots[0]
    buckets = slots[1:]
    lock = _write_lock

    def observe(amount: float) -> None:
        bucket, bucket_mapping, bucket_position = buckets[bisect_left(bounds, amount)]
        with lock:
            new_total = total._value + amount
            total._value = new_total
            if mapping is not None:
                _pack_double(mapping, position, new_total)
            count = bucket._value + 1.0
            bucket._value = count
            if bucket_mapping is not None:
                _pack_double(bucket_mapping, bucket_position, count)

    return observe


def _adder_of(child: Any) -> Callable[[float], None]:
    """``child.inc`` of a counter or gauge child (a negative amount decrements a gauge)."""
    value = getattr(child, "_value", None)
    if value is None or not hasattr(value, "inc"):
        inc: Callable[[float], None] = child.inc
        return inc
    return _value_adder(value)


def _value_adder(value: Any) -> Callable[[float], None]:
    """``value.inc`` of one of prometheus_client's value objects (a child's, or a histogram's sum or bucket)."""
    if getattr(value, "_multiprocess", False):
        return _mmap_adder(value)
    inc: Callable[[float], None] = value.inc
    return inc


_pack_double = struct.Struct("d").pack_into
_write_lock = threading.Lock()


def _slot(value: Any) -> _Slot | None:
    """Where a value's total lives: ``(value, None, 0)`` in one process (prometheus_client's ``MutexValue``),
    its file slot in multiprocess mode; ``None`` if prometheus_client's internals are not the expected ones."""
    if getattr(value, "_multiprocess", False):
        return _mmap_slot(value)
    if isinstance(getattr(value, "_value", None), float) and hasattr(value, "_lock"):
        return value, None, 0
    return None


def _mmap_slot(value: Any) -> _Slot | None:
    """``(value, mapping, position)``: where a multiprocess value's total lives in this process's file.

    Found once per process: metrics are bound after a fork, and ``value.get()`` first makes prometheus_client
    reopen this process's files. A file that grows gets a new mapping while the old one stays valid for the
    slots it covers. ``None`` if prometheus_client's internals are not the ones this was written against.
    """
    try:
        value.get()
        file, key = value._file, value._key
        file.write_value(key, value._value, 0.0)  # allocates the slot if new; timestamp 0 as inc() writes
        return value, file._m, file._positions[key]
    except AttributeError:
        return None


def _mmap_adder(value: Any) -> Callable[[float], None]:
    """``value.inc`` of a multiprocess (mmap-backed) value: the same bytes written to the same file.

    prometheus_client's own ``inc`` costs five Python calls per update (the lock, a pid check that exists to
    notice forks, the file's key look-up, the packing), and a request makes a dozen updates. This writes the
    new total into the value's slot directly. One lock (``_write_lock``, shared by every value Mest updates this
    way, and only by Mest's own series) serializes the updates so threads never lose one.
    """
    slot = _mmap_slot(value)
    if slot is None:
        inc: Callable[[float], None] = value.inc
        return inc
    _, mapping, position = slot
    lock = _write_lock

    def add(amount: float) -> None:
        with lock:
            total = value._value + amount
            value._value = total
            _pack_double(mapping, position, total)

    return add


class Metrics:
    """Every metric of one app, bound per process; renders ``/metrics``.

    Args:
        model_of: The app's look-up from a route to its model's pipeline.
    """

    def __init__(self, model_of: Callable[[str], Pipeline | None]) -> None:
        self.model_of = model_of
        self._lock = threading.Lock()
        self._models: list[ModelMetrics] = []
        self.pid: int | None = None
        self.families: _Families | None = None
        self._registry: CollectorRegistry | None = None
        self._directory: _multiprocess.MultiprocessDir | None = None

    def endpoint(self, method: str | None, route: str | None) -> EndpointMetrics:
        """The metrics of a new endpoint (``route=None``: the not-found fallback)."""
        return EndpointMetrics(self, method, route)

    def model(self, name: str, version: str | None) -> ModelMetrics:
        """The metrics of a newly registered model; set its ``pipeline`` once the pipeline exists."""
        model = ModelMetrics(self, name, version)
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

    @property
    def multiprocess_dir(self) -> str | None:
        """The shared directory in multiprocess mode (``None`` in single-process mode or before binding)."""
        return self._directory.path if self._directory is not None else None

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape: ``(body, content type)`` in the format the ``Accept`` header asks for."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        if self.pid != PROCESS.pid:
            self.bind()
        encoder, content_type = choose_encoder(accept or "")
        for model in self._models:
            model.refresh()
        directory = self._directory
        if directory is None:
            assert self._registry is not None
            return encoder(self._registry), content_type
        from prometheus_client.multiprocess import MultiProcessCollector

        with _multiprocess.locked(directory):
            _multiprocess.reap_dead(directory)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, directory.path)  # type: ignore[no-untyped-call]
            return encoder(registry), content_type
