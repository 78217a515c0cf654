"""The model queue in front of ``infer``: FIFO, bounded, with deadlines and adaptive batching.

Design (see docs/batching.md for the reasoning and measurements):

* **Leader/follower, no background thread.** The request that finds the model idle becomes the *leader*: it
  forms a batch from the queue, runs ``infer`` on its own thread or greenlet, hands every follower its result,
  and passes leadership to the oldest waiting request when its own answer is ready. No thread is started at
  import or registration time, so nothing is lost when gunicorn forks, and the same code runs on OS threads
  and on gevent greenlets (gunicorn's gevent worker turns ``threading`` primitives into cooperative ones, so a
  follower's wait yields to the event loop).
* **Adaptive delay.** A batch is dispatched when it is full, or when its oldest request has waited
  ``max_batch_delay``, but the leader waits *only while other requests are known to be on their way* (they
  have entered the pipeline and are still in ``pre_process``). An idle handler with one client therefore
  dispatches at once and pays no delay; under load, requests that arrive while the model is busy form the
  next batch for free (continuous batching), and the delay only tops up a batch that is about to be joined.
* **One request's failure is its own.** Items that time out in the queue are removed before they reach the
  model; an exception in ``infer`` fails only the batch it was raised for.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import GatewayTimeout, InferenceError, MestError, ServiceUnavailable

__all__ = ["BatchObserver", "Batcher", "BatchSizeMismatch"]

_QUEUED, _RUNNING, _DONE, _EXPIRED = range(4)


class BatchSizeMismatch(InferenceError):
    """A batched ``infer`` returned a different number of results than it was given inputs."""


class BatchObserver(Protocol):
    """Receives what the batcher alone knows (for metrics); called on the leader's thread."""

    def batch_started(self, size: int, queue_waits: Sequence[float]) -> None: ...

    def rejected(self, reason: str) -> None: ...


class _Item:
    __slots__ = ("data", "deadline", "enqueued_at", "error", "event", "lead", "result", "state")

    def __init__(self, data: Any, deadline: float | None, now: float) -> None:
        self.data = data
        self.deadline = deadline
        self.enqueued_at = now
        self.state = _QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self.event: threading.Event | None = None
        self.lead = False


class Batcher:
    """Serializes calls to one predictor's ``infer`` per process, batching them when allowed.

    Args:
        infer: The predictor's ``infer``.
        max_batch_size: ``1`` calls ``infer(item)``; more calls ``infer([item, ...])`` which must return a
            sequence of the same length.
        max_batch_delay_s: Longest time the oldest queued request waits for a batch to fill.
        max_queue: Requests allowed to wait (not counting the batch being run); beyond it, 503 at once.
        observer: Optional metrics hooks.
    """

    def __init__(
        self,
        infer: Callable[[Any], Any],
        *,
        max_batch_size: int = 1,
        max_batch_delay_s: float = 0.005,
        max_queue: int | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        self._infer = infer
        self._max_batch_size = max_batch_size
        self._max_batch_delay_s = max_batch_delay_s
        self._max_queue = max_queue
        self._observer = observer
        self._lock = threading.Lock()
        self._batch_ready = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()
        self._leading = False
        self._arriving = 0

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model right now."""
        return len(self._queue)

    def announce(self) -> None:
        """Tell the batcher a request has started and will probably :meth:`submit` soon."""
        with self._lock:
            self._arriving += 1

    def withdraw(self) -> None:
        """Undo :meth:`announce` for a request that failed before reaching the queue."""
        with self._lock:
            self._arriving -= 1

    def submit(self, data: Any, deadline: float | None = None, *, announced: bool = False) -> Any:
        """Run ``data`` through the model and return its own result.

        Args:
            data: One processed input.
            deadline: ``time.monotonic()`` value after which the request is answered 504.
            announced: The caller called :meth:`announce` for this request.

        Raises:
            ServiceUnavailable: The queue is full.
            GatewayTimeout: The deadline passed (if still queued, the input never reached the model).
            InferenceError: ``infer`` raised (``__cause__`` is the original) or returned a wrong-length batch.
        """
        item = _Item(data, deadline, time.monotonic())
        with self._lock:
            if announced:
                self._arriving -= 1
            if self._max_queue is not None and len(self._queue) >= self._max_queue:
                self._reject("queue_full")
                raise ServiceUnavailable(
                    f"Too many requests queued for this model (limit {self._max_queue}); retry later.",
                    headers={"Retry-After": "1"},
                )
            self._queue.append(item)
            if self._leading:
                item.event = threading.Event()
                self._batch_ready.notify()
            else:
                self._leading = item.lead = True
        if not item.lead:
            self._follow(item)
        if item.lead:
            self._lead(item)
        return self._outcome(item)

    def _reject(self, reason: str) -> None:
        if self._observer is not None:
            self._observer.rejected(reason)

    def _follow(self, item: _Item) -> None:
        """Wait until the item is answered, expires, or is handed leadership."""
        event = item.event
        assert event is not None
        timeout = None if item.deadline is None else max(0.0, item.deadline - time.monotonic())
        if event.wait(timeout):
            return
        with self._lock:
            if item.lead or item.state == _DONE:
                return
            if item.state == _QUEUED:
                self._queue.remove(item)
            item.state = _EXPIRED

    def _lead(self, own: _Item) -> None:
        try:
            while True:
                with self._lock:
                    if own.state in (_DONE, _EXPIRED):
                        return
                    batch = self._take_batch()
                if batch:
                    self._run(batch)
        finally:
            with self._lock:
                if own.state == _QUEUED:  # leaving on an exception: never strand our own item
                    self._queue.remove(own)
                    own.state = _EXPIRED
                self._hand_over()

    def _hand_over(self) -> None:
        """Give leadership to the oldest queued request, or mark the model idle. Called under the lock."""
        if self._queue:
            successor = self._queue[0]
            successor.lead = True
            assert successor.event is not None
            successor.event.set()
        else:
            self._leading = False

    def _expire_due(self, now: float) -> None:
        """Drop queued items whose deadline passed: they are answered 504 and never reach the model."""
        if not any(it.deadline is not None and it.deadline <= now for it in self._queue):
            return
        keep: deque[_Item] = deque()
        for it in self._queue:
            if it.deadline is not None and it.deadline <= now:
                it.state = _EXPIRED
                self._reject("timeout")
                if it.event is not None:
                    it.event.set()
            else:
                keep.append(it)
        self._queue = keep

    def _take_batch(self) -> list[_Item]:
        """Form the next batch under the lock, waiting for stragglers only while some are on their way."""
        limit = self._max_batch_size
        while True:
            now = time.monotonic()
            self._expire_due(now)
            queue = self._queue
            if not queue:
                return []
            if len(queue) >= limit or self._arriving <= 0:
                break
            remaining = queue[0].enqueued_at + self._max_batch_delay_s - now
            if remaining <= 0:
                break
            self._batch_ready.wait(remaining)
        batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
        for it in batch:
            it.state = _RUNNING
        return batch

    def _run(self, batch: list[_Item]) -> None:
        if self._observer is not None:
            started = time.monotonic()
            self._observer.batch_started(len(batch), [started - it.enqueued_at for it in batch])
        try:
            if self._max_batch_size == 1:
                results: Sequence[Any] = (self._infer(batch[0].data),)
            else:
                results = self._infer([it.data for it in batch])
                if not hasattr(results, "__len__") or len(results) != len(batch):
                    got = len(results) if hasattr(results, "__len__") else type(results).__name__
                    raise BatchSizeMismatch(
                        f"infer returned {got} results for a batch of {len(batch)}: a batched infer must "
                        "return one result per input, in order"
                    )
        except BaseException as exc:
            error = exc if isinstance(exc, MestError) else InferenceError("Inference failed.")
            if error is not exc:
                error.__cause__ = exc
            for it in batch:
                it.error = error
            self._finish(batch)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit, gevent's GreenletExit: let them propagate
            return
        for it, result in zip(batch, results):
            it.result = result
        self._finish(batch)

    def _finish(self, batch: list[_Item]) -> None:
        with self._lock:
            for it in batch:
                if it.state == _RUNNING:
                    it.state = _DONE
                if it.event is not None:
                    it.event.set()

    @staticmethod
    def _outcome(item: _Item) -> Any:
        if item.state == _EXPIRED:
            raise GatewayTimeout("The request was not answered within its time limit.")
        if item.error is not None:
            raise item.error
        return item.result
