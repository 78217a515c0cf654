"""The model queue in front of ``infer``: FIFO, bounded, with deadlines and adaptive batching.

Design (docs/batching.md has the reasoning and the measurements):

* **Leader/follower, no background thread.** The request that finds the model idle becomes the *leader*: it
  forms a batch from the queue, runs ``infer`` on its own thread or greenlet, hands every follower its result,
  and passes leadership to the oldest waiting request. No thread is started at import or registration time,
  and the locks are created lazily in each process, so nothing breaks when gunicorn forks (with or without
  ``--preload``) and the same code runs on OS threads and on gevent greenlets (gunicorn's gevent worker turns
  ``threading`` primitives into cooperative ones, so a follower's wait yields to the event loop).
* **Fair FIFO, also on gevent.** A request that finds the model idle yields once (see ``_scheduler``) before
  it takes the lead, so every request the process has already received enters the queue first. Without it, a
  greenlet whose keep-alive client answers fast never blocks and would run the model again and again while
  the other connections starve.
* **Adaptive delay.** A batch is dispatched as soon as it is full. Otherwise the leader looks for company
  before dispatching, and stops looking as soon as looking stops paying:

  1. while requests are known to be on their way (they entered the pipeline and are still in
     ``pre_process``), it waits for them;
  2. otherwise, if its last yield brought new requests, it yields again; if not, it dispatches at once.

  Both steps stop when the oldest queued request has waited ``max_batch_delay``. An idle handler with one
  client therefore pays one yield (microseconds), never the delay; under load, requests that arrive while the
  model is busy form the next batch (continuous batching), and the delay is only an upper bound.
* **The queue answers, it never calls back.** It calls only ``infer``, and gives each request an
  :class:`Answer`: its result or its own error, the size of its batch and, for the one request whose thread
  ran the batch, how long ``infer`` took, how long each request of the batch waited and the queue depth it
  left behind. Whoever submitted hands that to the metrics; the queue knows no observer.
* **Arrival is a context manager.** ``with batcher.arrival() as arrival: ... arrival.answer(data)``: the
  request is announced on entry (the adaptive delay's step 1 waits for it) and, if it never reached the queue (its
  ``pre_process`` failed, its deadline passed), withdrawn on exit, on every exit.
* **One request's failure is its own.** Items that time out in the queue are removed before they reach the
  model; an exception in ``infer`` fails only the batch it was raised for, and each request gets its own
  exception object (one instance re-raised in many threads would share and garble its traceback).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .._process import PROCESS
from ..errors import GatewayTimeout, InferenceError, MestError, ServiceUnavailable
from ._scheduler import cooperative_yield, gevent_patched

__all__ = ["Answer", "Arrival", "BatchSizeMismatch", "Batcher", "BatcherStats"]

_QUEUED, _RUNNING, _DONE, _EXPIRED = range(4)
_TIMEOUT_MESSAGE = "The request was not answered within its time limit."
_NO_WAIT = (0.0,)
_perf_counter = time.perf_counter
_monotonic = time.monotonic

# Guards the (rare) creation of a process's queue state; held only for a few non-blocking statements, and
# replaced in a forked child in case another thread of the parent held it at the fork.
_STATE_LOCK = threading.Lock()


def _new_state_lock() -> None:
    global _STATE_LOCK
    _STATE_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_state_lock)


class BatchSizeMismatch(InferenceError):
    """A batched ``infer`` returned a different number of results than it was given inputs."""


class Answer:
    """What the queue gives back for one input that reached the model.

    Attributes:
        result: What ``infer`` returned for this input (``None`` when ``error`` is set).
        error: Why there is no result: ``infer`` failed (an ``InferenceError`` chained to what it raised, or the
            ``MestError`` it raised, a copy per request), or the answer came after the deadline
            (``GatewayTimeout``: "answered in time, or 504", whoever ran the model).
        batch_size: Requests in the ``infer`` call that answered this one.
        queue_waits: Seconds each request of the batch waited in the queue, set only for the request whose
            thread ran the batch (empty for the others), so per-batch figures are reported once per batch.
        infer_seconds: How long the batch's ``infer`` took (set with ``queue_waits``).
        queue_depth: Requests left waiting when the batch started (set with ``queue_waits``).
    """

    __slots__ = ("batch_size", "error", "infer_seconds", "queue_depth", "queue_waits", "result")

    def __init__(
        self,
        result: Any,
        error: MestError | None,
        batch_size: int,
        queue_waits: Sequence[float] = (),
        infer_seconds: float = 0.0,
        queue_depth: int = 0,
    ) -> None:
        self.result = result
        self.error = error
        self.batch_size = batch_size
        self.queue_waits = queue_waits
        self.infer_seconds = infer_seconds
        self.queue_depth = queue_depth

    def value(self) -> Any:
        """The result, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.result


@dataclass(frozen=True)
class BatcherStats:
    """Counters of one batcher in this process (since the process started serving).

    Attributes:
        batches: ``infer`` calls made.
        inferred: Requests handed to ``infer`` (the sum of the batch sizes).
        failed_batches: ``infer`` calls that raised or returned a wrong-length batch.
        rejected_full: Requests refused with 503 because ``max_queue`` requests were waiting.
        expired_queued: Requests answered 504 while still queued: they never reached the model.
        expired_late: Requests answered 504 whose batch had started or finished after their deadline.
        queued: Requests waiting right now (not counting the batch being run).
        max_batch_size_seen: The largest batch formed.
    """

    batches: int
    inferred: int
    failed_batches: int
    rejected_full: int
    expired_queued: int
    expired_late: int
    queued: int
    max_batch_size_seen: int


class _Item:
    __slots__ = (
        "batch_size", "data", "deadline", "enqueued_at", "error", "event", "lead", "ran", "result", "state",
    )

    def __init__(self, data: Any, deadline: float | None, now: float) -> None:
        self.data = data
        self.deadline = deadline
        self.enqueued_at = now
        self.state = _QUEUED
        self.result: Any = None
        self.error: MestError | None = None
        self.event: threading.Event | None = None
        self.lead = False
        self.batch_size = 0
        # The leader's own item: (queue waits, infer seconds, queue depth) of the batch its thread ran.
        self.ran: tuple[Sequence[float], float, int] | None = None


class _State:
    """Everything mutable, created in the process that serves (after any fork, after gevent patching)."""

    def __init__(self, max_batch_size: int, max_queue: int | None) -> None:
        self.pid = PROCESS.pid
        self.lock = threading.Lock()
        self.batch_ready = threading.Condition(self.lock)
        self.yield_now = cooperative_yield()
        # Leading from idle yields once first (see Batcher._lead): for fairness under gevent, and to let
        # batches form. On OS threads without batching there is nothing to gain (the GIL already rotates), and
        # the system call would be paid by every request, on gunicorn's sync worker too.
        self.yield_on_lead = max_batch_size > 1 or gevent_patched()
        # ... and a request finding the model idle is a batch of one at once (see Batcher._run_alone).
        self.run_at_once = not self.yield_on_lead
        self.queue: deque[_Item] = deque()
        self.leading = False
        self.arriving = 0
        self.submitted = 0
        self.deadlines = False  # some request ever came with a deadline: only then scan the queue for expiry
        self.batches = 0
        self.inferred = 0
        self.failed_batches = 0
        self.rejected_full = 0
        self.expired_queued = 0
        self.expired_late = 0
        self.max_batch_size_seen = 0


class Arrival:
    """Requests on their way to the queue (still in ``pre_process``), announced so that a batch being formed
    waits for them; get one from :meth:`Batcher.arrival` and use it as a context manager.

    Each announced request leaves by :meth:`answer` (or :meth:`submit`); leaving the ``with`` block withdraws
    those that did not (their ``pre_process`` failed, their deadline passed), so a leader never waits for a
    request that is not coming. After the block, :meth:`answer` still works, unannounced. Thread-safe: the
    requests of one arrival may be submitted from several threads.
    """

    __slots__ = ("_batcher", "_pending", "_st")

    def __init__(self, batcher: Batcher, st: _State | None, pending: int) -> None:
        self._batcher = batcher
        self._st = st
        self._pending = pending  # announced, neither submitted nor withdrawn; changed under st.lock

    def __enter__(self) -> Arrival:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pending:
            self._batcher._withdraw(self)

    def one(self) -> Arrival:
        """One of the announced requests, as an arrival of its own: leaving its ``with`` block withdraws it
        alone if it did not reach the queue (one failed input of a wave must not hold the batch for the
        others' delay), while the rest stay announced. After the block of this arrival, an unannounced one."""
        st = self._st
        if st is None:
            return self  # announces nothing (unbatched)
        with st.lock:
            if not self._pending:
                return self._batcher._unannounced
            self._pending -= 1
        return Arrival(self._batcher, st, 1)

    def answer(self, data: Any, deadline: float | None = None) -> Answer:
        """:meth:`Batcher.answer` for one of the announced requests."""
        return self._batcher.answer(data, deadline, arrival=self)

    def submit(self, data: Any, deadline: float | None = None) -> Any:
        """:meth:`Batcher.submit` for one of the announced requests."""
        return self._batcher.answer(data, deadline, arrival=self).value()


class Batcher:
    """Serializes calls to one predictor's ``infer`` per process, batching them when allowed.

    Args:
        infer: The predictor's ``infer``.
        max_batch_size: ``1`` calls ``infer(item)``; more calls ``infer([item, ...])`` which must return a
            sequence of the same length.
        max_batch_delay_s: Longest time the oldest queued request waits for a batch to fill.
        max_queue: Requests allowed to wait (not counting the batch being run); beyond it, 503 at once.
    """

    def __init__(
        self,
        infer: Callable[[Any], Any],
        *,
        max_batch_size: int = 1,
        max_batch_delay_s: float = 0.005,
        max_queue: int | None = None,
    ) -> None:
        self._infer = infer
        self._max_batch_size = max_batch_size
        self._max_batch_delay_s = max_batch_delay_s
        self._max_queue = max_queue
        self._st: _State | None = None
        # Without batching nobody waits for announced requests: every arrival is this one, which announces none.
        self._unannounced = Arrival(self, None, 0)

    @property
    def _state(self) -> _State:
        st = self._st
        if st is None or st.pid != PROCESS.pid:
            st = self._new_state()
        return st

    def _new_state(self) -> _State:
        with _STATE_LOCK:
            st = self._st
            if st is None or st.pid != PROCESS.pid:
                st = self._st = _State(self._max_batch_size, self._max_queue)
        return st

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model right now."""
        return len(self._state.queue)

    def stats(self) -> BatcherStats:
        """A consistent snapshot of this process's counters."""
        st = self._state
        with st.lock:
            return BatcherStats(
                batches=st.batches,
                inferred=st.inferred,
                failed_batches=st.failed_batches,
                rejected_full=st.rejected_full,
                expired_queued=st.expired_queued,
                expired_late=st.expired_late,
                queued=len(st.queue),
                max_batch_size_seen=st.max_batch_size_seen,
            )

    def arrival(self, count: int = 1) -> Arrival:
        """Announce ``count`` requests that have started and will probably reach the queue soon.

        Use the result as a context manager (see :class:`Arrival`)::

            with batcher.arrival() as arrival:
                processed = pre_process(data)
                answer = arrival.answer(processed, deadline)
        """
        if self._max_batch_size == 1:
            return self._unannounced  # only a batch being formed waits for announced requests
        st = self._state
        with st.lock:
            st.arriving += count
        return Arrival(self, st, count)

    def _withdraw(self, arrival: Arrival) -> None:
        """Undo the announcements of ``arrival`` that never reached the queue."""
        st = arrival._st
        assert st is not None
        with st.lock:
            st.arriving -= arrival._pending
            arrival._pending = 0
            st.batch_ready.notify()  # a leader waiting for these requests need not wait any longer

    def submit(self, data: Any, deadline: float | None = None) -> Any:
        """Run ``data`` through the model and return its own result (:meth:`answer` tells more).

        Raises:
            ServiceUnavailable: The queue is full (``Retry-After`` is set).
            GatewayTimeout: The deadline passed (if still queued, the input never reached the model).
            InferenceError: ``infer`` raised (``__cause__`` is the original) or returned a wrong-length batch.
        """
        return self.answer(data, deadline).value()

    def answer(self, data: Any, deadline: float | None = None, *, arrival: Arrival | None = None) -> Answer:
        """Run ``data`` through the model and return its :class:`Answer`.

        Args:
            data: One processed input.
            deadline: ``time.monotonic()`` value after which the request is answered 504.
            arrival: The :meth:`arrival` this request was announced with, if it was.

        Raises:
            ServiceUnavailable: The queue is full (``Retry-After`` is set): the input never reached the model.
            GatewayTimeout: The deadline passed while the input was queued: it never reached the model.
        """
        st = self._st
        if st is None or st.pid != PROCESS.pid:
            st = self._new_state()
        item: _Item | None = None
        alone = False
        # Everything is decided under the lock and acted on after it is released: nothing below calls back
        # into the queue or the model while holding it.
        with st.lock:
            if arrival is not None and arrival._pending and arrival._st is st:
                arrival._pending -= 1
                st.arriving -= 1
            full = self._max_queue is not None and len(st.queue) >= self._max_queue
            if full:
                st.rejected_full += 1
                st.batch_ready.notify()
            else:
                st.submitted += 1
                if deadline is not None:
                    st.deadlines = True
                if not st.leading and st.run_at_once:
                    # The model is idle and nothing could join a batch (unbatched, on OS threads): this request
                    # is a batch of one at once, with no queue entry and no yield (see ``_run_alone``).
                    st.leading = alone = True
                    st.batches += 1  # what _count_batch(st, 1) does, inline on the busiest path
                    st.inferred += 1
                    if st.max_batch_size_seen == 0:
                        st.max_batch_size_seen = 1
                else:
                    item = _Item(data, deadline, _monotonic())
                    if st.leading:
                        item.event = threading.Event()
                        st.queue.append(item)
                        st.batch_ready.notify()
                    else:
                        st.leading = item.lead = True
                        st.queue.append(item)
        if full:
            raise ServiceUnavailable(
                f"Too many requests queued for this model (limit {self._max_queue}); retry later.",
                headers={"Retry-After": "1"},
            )
        if alone:
            return self._run_alone(st, data, deadline)
        assert item is not None
        if item.lead:
            # Leading from idle: first let requests the process already received reach the queue (see
            # ``_lead``). A follower handed leadership skips this: the model was busy, the others queued.
            self._lead(st, item, from_idle=True)
        else:
            self._follow(st, item)
            if item.lead:
                self._lead(st, item, from_idle=False)
        return self._outcome(st, item)

    def _run_alone(self, st: _State, data: Any, deadline: float | None) -> Answer:
        """What ``_lead`` and ``_run`` do for a batch of one formed at submit, without an item in a queue.

        A second path on purpose: it makes the queue step about three times cheaper for every request that
        finds an unbatched model idle, the common case on OS-thread servers (docs/benchmarks.md). It shares
        the counters (``_late``), the answer's shape and the error translation (``_error_for``) with the
        general path, and like it hands over to whoever queued meanwhile.
        """
        error: MestError | None = None
        result: Any = None
        failed = True
        started = _perf_counter()
        try:
            result = self._infer(data)
            failed = False
        except Exception as exc:
            error = _error_for(exc)
        finally:  # KeyboardInterrupt, SystemExit propagate, and the model is handed over all the same
            seconds = _perf_counter() - started
            with st.lock:
                if failed:
                    st.failed_batches += 1
                if st.queue:
                    self._hand_over(st)
                else:
                    st.leading = False
        if deadline is not None and self._late(st, deadline):
            error = GatewayTimeout(_TIMEOUT_MESSAGE)
        return Answer(result, error, 1, _NO_WAIT, seconds)

    @staticmethod
    def _late(st: _State, deadline: float) -> bool:
        """Answered, but after the deadline (typically the request whose thread ran a slow model): the contract
        is "answered in time, or 504", whoever ran the model. Counts it."""
        if _monotonic() > deadline:
            with st.lock:
                st.expired_late += 1
            return True
        return False

    def _follow(self, st: _State, item: _Item) -> None:
        """Wait until the item is answered, expires, or is handed leadership."""
        event = item.event
        assert event is not None
        timeout = None if item.deadline is None else max(0.0, item.deadline - _monotonic())
        try:
            answered = event.wait(timeout)
        except BaseException:
            # Killed while waiting (gevent's GreenletExit, a signal): never leave a stale item or, worse, a
            # leadership nobody takes up (every later request would wait forever).
            with st.lock:
                if item.state == _QUEUED:
                    st.queue.remove(item)
                    item.state = _EXPIRED
                if item.lead:
                    item.lead = False
                    self._hand_over(st)
            raise
        if answered:
            return
        with st.lock:
            if item.lead or item.state == _DONE:
                return
            if item.state == _QUEUED:
                st.queue.remove(item)
                st.expired_queued += 1
            elif item.state == _RUNNING:
                st.expired_late += 1
            item.state = _EXPIRED

    def _lead(self, st: _State, own: _Item, *, from_idle: bool) -> None:
        """Run batches until our own item is answered, then hand leadership over.

        Our own item is the oldest queued one (the queue was empty when we took the lead from idle, and a
        hand-over goes to the oldest), so the first batch we run holds it: ``own.ran`` describes that batch.
        """
        try:
            looked_at = -1
            if from_idle and st.yield_on_lead:
                # Fairness on gevent, batching everywhere: a greenlet whose keep-alive client answers fast never
                # blocks on I/O, so without this yield it would lead, run the model, read its next request and
                # lead again, starving every other connection (measured: a few connections served, the rest
                # waiting until their clients time out). One trip through the scheduler lets every request
                # already received enter the FIFO queue behind us first. On OS threads it is a GIL release.
                with st.lock:
                    looked_at = st.submitted
                st.yield_now()
            while True:
                with st.lock:
                    if own.state in (_DONE, _EXPIRED):
                        return
                    batch = self._take_batch(st, own, looked_at)
                if batch:
                    self._run(st, batch, own)
        finally:
            with st.lock:
                if own.state == _QUEUED:  # leaving on an exception: never strand our own item
                    st.queue.remove(own)
                    own.state = _EXPIRED
                self._hand_over(st)

    @staticmethod
    def _hand_over(st: _State) -> None:
        """Give leadership to the oldest queued request, or mark the model idle. Called under the lock."""
        if st.queue:
            successor = st.queue[0]
            successor.lead = True
            assert successor.event is not None
            successor.event.set()
        else:
            st.leading = False

    @staticmethod
    def _expire_due(st: _State, now: float) -> None:
        """Drop queued items whose deadline passed (answered 504, they never reach the model). Called under the
        lock."""
        if not st.deadlines or not any(it.deadline is not None and it.deadline <= now for it in st.queue):
            return
        keep: deque[_Item] = deque()
        for it in st.queue:
            if it.deadline is not None and it.deadline <= now:
                it.state = _EXPIRED
                st.expired_queued += 1
                if it.event is not None:
                    it.event.set()
            else:
                keep.append(it)
        st.queue = keep

    def _take_batch(self, st: _State, own: _Item, looked_at: int) -> list[_Item]:
        """Form the next batch (called and returning under the lock); ``[]`` if our own item expired.

        The adaptive policy of the module docstring: wait for announced requests, otherwise look once more
        for requests the process already received, dispatch when a look brings nobody; never hold the oldest
        request past ``max_batch_delay``.
        """
        limit = self._max_batch_size  # looked_at: st.submitted when we last yielded (-1: not yet)
        while True:
            now = _monotonic()
            self._expire_due(st, now)
            if own.state == _EXPIRED:
                return []
            queue = st.queue
            if len(queue) >= limit:
                break
            remaining = queue[0].enqueued_at + self._max_batch_delay_s - now
            if remaining <= 0:
                break
            if own.deadline is not None:
                remaining = min(remaining, own.deadline - now)
            if st.arriving > 0:
                st.batch_ready.wait(remaining)
                continue
            if st.submitted == looked_at:
                break  # the last look brought nobody: nobody else is coming soon
            looked_at = st.submitted
            st.lock.release()
            try:
                st.yield_now()
            finally:
                st.lock.acquire()
        size = min(limit, len(queue))
        batch = [queue.popleft() for _ in range(size)]
        for it in batch:
            it.state = _RUNNING
            it.batch_size = size
        self._count_batch(st, size)
        return batch

    @staticmethod
    def _count_batch(st: _State, size: int) -> None:
        """Count a batch that is about to run. Called under the lock."""
        st.batches += 1
        st.inferred += size
        if size > st.max_batch_size_seen:
            st.max_batch_size_seen = size

    def _call_infer(self, batch: list[_Item]) -> Sequence[Any]:
        if self._max_batch_size == 1:
            return (self._infer(batch[0].data),)
        results = self._infer([it.data for it in batch])
        if not hasattr(results, "__len__") or len(results) != len(batch):
            got = len(results) if hasattr(results, "__len__") else f"a {type(results).__name__} (no length)"
            raise BatchSizeMismatch(
                f"infer returned {got} results for a batch of {len(batch)}: a batched infer must return "
                "one result per input, in order"
            )
        return results  # type: ignore[no-any-return]

    def _run(self, st: _State, batch: list[_Item], own: _Item) -> None:
        now = _monotonic()
        waits = [now - it.enqueued_at for it in batch]
        depth = len(st.queue)  # read without the lock: a gauge's value, and len() of a deque is atomic
        started = _perf_counter()
        try:
            results = self._call_infer(batch)
        except BaseException as exc:
            own.ran = (waits, _perf_counter() - started, depth)
            for it in batch:
                it.error = _error_for(exc)
            self._finish(st, batch, failed=True)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit, gevent's GreenletExit: let them propagate
            return
        own.ran = (waits, _perf_counter() - started, depth)
        for it, result in zip(batch, results, strict=True):
            it.result = result
        self._finish(st, batch, failed=False)

    @staticmethod
    def _finish(st: _State, batch: list[_Item], *, failed: bool) -> None:
        with st.lock:
            if failed:
                st.failed_batches += 1
            for it in batch:
                if it.state == _RUNNING:
                    it.state = _DONE
                if it.event is not None:
                    it.event.set()

    def _outcome(self, st: _State, item: _Item) -> Answer:
        if item.state == _EXPIRED and not item.batch_size:
            raise GatewayTimeout(_TIMEOUT_MESSAGE)  # never reached the model
        error = item.error
        if item.state == _EXPIRED or (item.deadline is not None and self._late(st, item.deadline)):
            error = GatewayTimeout(_TIMEOUT_MESSAGE)  # its batch ran, but it was not answered in time
        ran = item.ran
        if ran is None:
            return Answer(item.result if error is None else None, error, item.batch_size)
        return Answer(item.result if error is None else None, error, item.batch_size, *ran)


def _error_for(exc: BaseException) -> MestError:
    """A fresh error for one request of a failed batch, chained to what ``infer`` raised."""
    if isinstance(exc, MestError):
        error = copy.copy(exc)
        error.__traceback__ = None
    else:
        error = InferenceError("Inference failed.")
    error.__cause__ = exc
    return error
