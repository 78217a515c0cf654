"""The model queue under adversarial thread interleavings: no deadlock, every request its own answer.

The first test forces, deterministically, the interleaving that deadlocked the unbatched queue: request A decides
the model is idle, request B takes the model before A locks the queue, then A locks it. The stress tests run 16
OS threads through one queue with an ``infer`` that releases the GIL (as numpy, scikit-learn and torch do) and a
tiny switch interval, so threads are preempted everywhere; every wait is bounded, so a deadlock fails the test
instead of hanging it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from mest.batching import Batcher, _batcher
from mest.errors import GatewayTimeout, ServiceUnavailable
from support.mest_serve import mest_argv, running
from support.servers import RunningServer, dev_server

LIMIT_S = 30.0  # reached only when a thread is stuck
THREADS = 16


class _PausingLock:
    """A lock whose first blocking acquire by the thread named ``paused`` waits for ``until`` first.

    Stands in for the queue's lock to hold that thread between "the model looks idle" and "lock the queue".
    """

    def __init__(self, paused: str, until: threading.Event, acquired: threading.Event) -> None:
        self._lock = threading.Lock()
        self._paused = paused
        self._until = until
        self._acquired = acquired
        self._done = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.current_thread().name == self._paused
        if me and blocking and not self._done:
            self._done = True
            assert self._until.wait(LIMIT_S), "the other thread never reached infer"
            got = self._lock.acquire(blocking, timeout)
            self._acquired.set()
            return got
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_request_that_finds_the_model_taken_while_locking_the_queue_waits_its_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b_in_infer = threading.Event()
    a_locked = threading.Event()
    lock = _PausingLock("A", until=b_in_infer, acquired=a_locked)

    class State(_batcher._State):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.lock = lock  # type: ignore[assignment]
            self.batch_ready = threading.Condition(lock)  # type: ignore[arg-type]

    monkeypatch.setattr(_batcher, "_State", State)

    def infer(item: str) -> str:
        if item == "b":
            b_in_infer.set()
            a_locked.wait(LIMIT_S)  # B holds the model until A has locked the queue
        return f"answer-{item}"

    batcher = Batcher(infer)  # unbatched: the default max_batch_size=1
    results: dict[str, object] = {}

    def send(item: str) -> None:
        results[item] = batcher.submit(item)

    a = threading.Thread(target=send, args=("a",), name="A", daemon=True)
    b = threading.Thread(target=send, args=("b",), name="B", daemon=True)
    a.start()  # A pauses at its first lock, after any unlocked look at the queue
    b.start()
    a.join(LIMIT_S)
    b.join(LIMIT_S)
    assert not a.is_alive() and not b.is_alive(), "deadlock: a request locked the queue twice"
    assert results == {"a": "answer-a", "b": "answer-b"}


def _gil_releasing_infer(batched: bool) -> Any:
    matrix = np.random.default_rng(0).random((48, 48))

    def infer(data: Any) -> Any:
        items = data if batched else [data]
        for _ in items:
            matrix @ matrix  # BLAS releases the GIL, as real models do
        answers = [("answer", item) for item in items]
        return answers if batched else answers[0]

    return infer


@pytest.fixture
def preemptive() -> Iterator[None]:
    """Switch threads every microsecond: a race that needs an unlucky preemption gets thousands of chances."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize(
    ("max_batch_size", "max_queue", "timeout_s"),
    [(1, None, None), (1, None, 30.0), (1, 4, None), (4, None, None), (4, 6, 30.0)],
    ids=["unbatched", "unbatched-deadlines", "unbatched-bounded", "batched", "batched-bounded-deadlines"],
)
def test_sixteen_threads_hammering_one_queue_all_get_their_own_answer(
    preemptive: None, max_batch_size: int, max_queue: int | None, timeout_s: float | None
) -> None:
    import time

    batcher = Batcher(
        _gil_releasing_infer(max_batch_size > 1), max_batch_size=max_batch_size, max_queue=max_queue
    )
    per_thread = 150
    outcomes: dict[str, str] = {}
    wrong: list[tuple[str, object]] = []

    def worker(thread: int) -> None:
        for i in range(per_thread):
            item = f"{thread}-{i}"
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            try:
                result = batcher.submit(item, deadline)
            except ServiceUnavailable:
                outcomes[item] = "503"
                continue
            except GatewayTimeout:
                outcomes[item] = "504"
                continue
            outcomes[item] = "ok"
            if result != ("answer", item):
                wrong.append((item, result))

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT_S)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck in the queue"
    assert wrong == []
    assert len(outcomes) == THREADS * per_thread
    stats = batcher.stats()
    answered = sum(1 for outcome in outcomes.values() if outcome == "ok")
    assert stats.inferred >= answered  # a 504 may still have reached the model
    assert stats.rejected_full == sum(1 for outcome in outcomes.values() if outcome == "503")
    if max_queue is None:
        assert stats.rejected_full == 0
    if timeout_s is None:
        assert "504" not in outcomes.values()
    assert stats.queued == 0
    assert stats.max_batch_size_seen <= max_batch_size


# -- the same on the OS-thread servers ---------------------------------------------------------------------

SERVERS = ["dev", "gthread", "granian", "mest-gevent"]


@pytest.fixture(params=SERVERS)
def race_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    kind = request.param
    if kind == "dev":
        with dev_server("race_app.py") as server:
            yield server
    elif kind == "gthread":
        with running(mest_argv("race_app:app", "-w", "1", "-k", "gthread", "--threads", str(THREADS))) as server:
            yield server
    elif kind == "granian":
        pytest.importorskip("granian")
        with running(mest_argv("race_app:app", "--server", "granian", "-w", "1", "--threads", str(THREADS))) as server:
            yield server
    else:
        with running(mest_argv("race_app:app", "-w", "1")) as server:
            yield server


@pytest.mark.server
def test_sixteen_clients_on_one_worker_with_a_gil_releasing_model_are_all_answered(
    race_server: RunningServer,
) -> None:
    per_client = 25

    def client(number: int) -> list[tuple[str, Any]]:
        got = []
        with httpx.Client(base_url=race_server.url, timeout=LIMIT_S) as http:
            for i in range(per_client):
                item = f"{number}-{i}"
                response = http.post("/predict", json={"id": item})
                got.append((item, (response.status_code, response.json().get("id"))))
        return got

    with ThreadPoolExecutor(THREADS) as pool:
        answers = [pair for result in pool.map(client, range(THREADS)) for pair in result]
    assert len(answers) == THREADS * per_client
    assert all(outcome == (200, item) for item, outcome in answers), [a for a in answers if a[1] != (200, a[0])][:5]
