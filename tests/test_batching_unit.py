"""The Batcher on its own, driven by OS threads.

Inputs identify themselves and ``infer`` records every batch it receives, so the tests assert on what happened
(who was batched with whom, what reached the model), never on how long it took. Where a request must be held
inside ``infer`` to make queueing deterministic, a gate (an Event the test sets) holds it; every wait in this
file is bounded so a regression fails instead of hanging.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mest import Mest
from mest.api import Request
from mest.batching import Arrival, Batcher, BatchSizeMismatch
from mest.errors import BadRequest, GatewayTimeout, InferenceError, ServiceUnavailable
from mest.predictors import PredictorBase
from mest.testing import TestClient

LIMIT_S = 30.0  # upper bound of every wait: reached only when the behaviour under test is broken
HOUR_S = 3600.0


class Model:
    """A batched ``infer`` that records its batches and can hold a batch until a gate opens."""

    def __init__(self, *, batched: bool = True) -> None:
        self.batched = batched
        self.batches: list[list[Any]] = []
        self.lock = threading.Lock()
        self.gates: dict[Any, threading.Event] = {}
        self.entered = threading.Event()
        self.fail_on: set[Any] = set()
        self.short = False

    def hold(self, item: Any) -> threading.Event:
        gate = self.gates[item] = threading.Event()
        return gate

    def __call__(self, data: Any) -> Any:
        items = data if self.batched else [data]
        with self.lock:
            self.batches.append(list(items))
        self.entered.set()
        for item in items:
            gate = self.gates.get(item)
            if gate is not None:
                assert gate.wait(LIMIT_S), "test never opened the gate"
        if self.fail_on.intersection(items):
            raise RuntimeError(f"boom in batch {items}")
        results = [("answer", item) for item in items]
        if self.short:
            results = results[:-1]
        return results if self.batched else results[0]

    @property
    def seen(self) -> list[Any]:
        with self.lock:
            return [item for batch in self.batches for item in batch]


class Call:
    """``queue.submit(data)`` on its own thread (a batcher, or an arrival announced to it); ``result()``
    re-raises what it raised."""

    def __init__(self, queue: Batcher | Arrival, data: Any, deadline: float | None = None):
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(queue, data, deadline), daemon=True)
        self.thread.start()

    def _run(self, queue: Batcher | Arrival, data: Any, deadline: float | None) -> None:
        try:
            self.value = queue.submit(data, deadline)
        except BaseException as exc:
            self.error = exc

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self) -> Any:
        self.thread.join(LIMIT_S)
        assert not self.thread.is_alive(), "submit() never returned"
        if self.error is not None:
            raise self.error
        return self.value


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.002)


@pytest.fixture
def model() -> Model:
    return Model()


def hold_leader(batcher: Batcher, model: Model, name: str = "leader") -> tuple[Call, threading.Event]:
    """Start a request and keep it inside infer, so the next ones queue."""
    gate = model.hold(name)
    call = Call(batcher, name)
    wait_until(lambda: name in model.seen, "the leader reached infer")
    return call, gate


# -- batching and identity ---------------------------------------------------------------------------


def test_concurrent_requests_each_get_their_own_answer(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=0.002)
    threads, per_thread = 24, 25
    start = threading.Barrier(threads)
    wrong: list[tuple[Any, Any]] = []

    def client(t: int) -> None:
        start.wait(LIMIT_S)
        for i in range(per_thread):
            mine = f"{t}-{i}-{random.random()}"
            answer = batcher.submit(mine)
            if answer != ("answer", mine):
                wrong.append((mine, answer))

    workers = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(LIMIT_S)
    assert not any(w.is_alive() for w in workers)
    assert wrong == []
    assert sorted(model.seen) == sorted(set(model.seen))  # nobody inferred twice
    assert len(model.seen) == threads * per_thread
    assert all(1 <= len(b) <= 8 for b in model.batches)
    stats = batcher.stats()
    assert stats.inferred == threads * per_thread and stats.batches == len(model.batches)


def test_requests_queued_behind_a_running_batch_form_full_batches(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=HOUR_S)
    leader, gate = hold_leader(batcher, model)
    calls = [Call(batcher, f"q{i}") for i in range(16)]
    wait_until(lambda: batcher.queue_depth == 16, "16 requests queued")
    gate.set()
    assert leader.result() == ("answer", "leader")
    for i, call in enumerate(calls):
        assert call.result() == ("answer", f"q{i}")
    # Full batches dispatch at once (the hour-long delay is never waited for), in FIFO order.
    assert [len(b) for b in model.batches] == [1, 8, 8]
    assert model.batches[1] + model.batches[2] == [f"q{i}" for i in range(16)]
    assert batcher.stats().max_batch_size_seen == 8


def test_an_idle_request_is_dispatched_without_waiting_for_the_delay(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=32, max_batch_delay_s=HOUR_S)
    for i in range(5):  # one client, one request at a time: each must be answered alone, at once
        assert Call(batcher, f"solo{i}").result() == ("answer", f"solo{i}")
    assert model.batches == [[f"solo{i}"] for i in range(5)]


def test_the_leader_waits_for_announced_requests_and_batches_them(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=HOUR_S)
    with batcher.arrival() as coming:  # a second request is in pre_process
        first = Call(batcher, "first")
        wait_until(lambda: batcher.queue_depth == 1, "the first request queued")
        assert not first.done()  # it waits for the announced one instead of dispatching alone
        second = Call(coming, "second")
        assert first.result() == ("answer", "first")
        assert second.result() == ("answer", "second")
    assert model.batches == [["first", "second"]]


def test_a_withdrawn_announcement_releases_the_waiting_leader(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=HOUR_S)
    with batcher.arrival():  # leaving the block withdraws: its pre_process failed, nobody is coming any more
        first = Call(batcher, "first")
        wait_until(lambda: batcher.queue_depth == 1, "the first request queued")
    assert first.result() == ("answer", "first")
    assert model.batches == [["first"]]


def test_without_batching_infer_gets_single_items_in_fifo_order() -> None:
    model = Model(batched=False)
    batcher = Batcher(model, max_batch_size=1)
    leader, gate = hold_leader(batcher, model)
    calls = [Call(batcher, i) for i in range(6)]
    wait_until(lambda: batcher.queue_depth == 6, "6 requests queued")
    gate.set()
    assert leader.result() == ("answer", "leader")
    assert [c.result() for c in calls] == [("answer", i) for i in range(6)]
    assert model.batches == [["leader"], *[[i] for i in range(6)]]


# -- what the queue answers, and arrivals ----------------------------------------------------------------


class AnswerCall(Call):
    """``batcher.answer(data)`` on its own thread."""

    def _run(self, queue: Batcher | Arrival, data: Any, deadline: float | None) -> None:
        try:
            self.value = queue.answer(data, deadline)
        except BaseException as exc:
            self.error = exc


def test_the_request_that_ran_a_batch_gets_its_figures_the_others_its_size(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=4, max_batch_delay_s=HOUR_S)
    leader, gate = hold_leader(batcher, model)
    calls = [AnswerCall(batcher, f"q{i}") for i in range(3)]
    wait_until(lambda: batcher.queue_depth == 3, "3 requests queued")
    gate.set()
    assert leader.result() == ("answer", "leader")
    answers = [call.result() for call in calls]
    assert [a.result for a in answers] == [("answer", f"q{i}") for i in range(3)]
    assert all(a.error is None and a.batch_size == 3 for a in answers)
    ran = [a for a in answers if a.queue_waits]
    assert len(ran) == 1  # reported once per batch
    assert len(ran[0].queue_waits) == 3 and all(wait >= 0 for wait in ran[0].queue_waits)
    assert ran[0].infer_seconds >= 0 and ran[0].queue_depth == 0


@pytest.mark.parametrize("max_batch_size", [1, 4])
def test_an_idle_model_answers_with_a_batch_of_one(max_batch_size: int) -> None:
    model = Model(batched=max_batch_size > 1)
    answer = Batcher(model, max_batch_size=max_batch_size).answer("solo")
    assert (answer.result, answer.error, answer.batch_size) == (("answer", "solo"), None, 1)
    assert len(answer.queue_waits) == 1 and answer.infer_seconds >= 0


@pytest.mark.parametrize("max_batch_size", [1, 4])
def test_a_failed_batch_is_an_answer_with_its_error_and_its_figures(max_batch_size: int) -> None:
    model = Model(batched=max_batch_size > 1)
    model.fail_on.add("bad")
    answer = Batcher(model, max_batch_size=max_batch_size).answer("bad")
    assert isinstance(answer.error, InferenceError) and answer.result is None
    assert isinstance(answer.error.__cause__, RuntimeError)
    assert answer.batch_size == 1 and len(answer.queue_waits) == 1  # still reported: the model ran
    with pytest.raises(InferenceError):
        answer.value()


def test_an_answer_after_the_deadline_carries_a_timeout(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=4)
    deadline = time.monotonic() + 0.05
    gate = model.hold("slow")
    slow = AnswerCall(batcher, "slow", deadline=deadline)
    wait_until(lambda: time.monotonic() > deadline and "slow" in model.seen, "the deadline passed in infer")
    gate.set()
    answer = slow.result()
    assert isinstance(answer.error, GatewayTimeout) and answer.result is None
    assert answer.batch_size == 1 and answer.queue_waits  # its batch ran: its figures are still reported


def test_leaving_an_arrival_on_an_exception_withdraws_it(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=HOUR_S)
    with pytest.raises(ValueError), batcher.arrival():
        raise ValueError("pre_process failed")
    # Had the announcement stayed, this request would wait the hour-long delay for it.
    assert Call(batcher, "next").result() == ("answer", "next")


def test_an_arrival_of_several_withdraws_only_those_that_did_not_come(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=HOUR_S)
    with batcher.arrival(3) as wave:
        first = Call(wave, "first")
        wait_until(lambda: batcher.queue_depth == 1, "the first input queued")
        second = Call(wave, "second")
        wait_until(lambda: batcher.queue_depth == 2, "the second input queued")
        assert not first.done()  # the batch waits for the third input
    # The third never came: leaving the block withdrew it, and the batch left with the two.
    assert first.result() == ("answer", "first") and second.result() == ("answer", "second")
    assert model.batches == [["first", "second"]]
    assert wave.submit("late") == ("answer", "late")  # after the block: unannounced, as any request


def test_one_input_of_a_wave_that_fails_is_withdrawn_at_once(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=HOUR_S)
    with batcher.arrival(2) as wave:
        first = Call(wave.one(), "first")
        wait_until(lambda: batcher.queue_depth == 1, "the first input queued")
        with pytest.raises(ValueError), wave.one():  # the other input fails before reaching the queue
            raise ValueError("pre_process failed")
        # Still inside the wave's block: the batch left without waiting the hour for the failed input.
        assert first.result() == ("answer", "first")
    assert model.batches == [["first"]]


def test_a_pipeline_input_of_a_wave_that_fails_does_not_hold_the_others() -> None:
    class Doubler(PredictorBase):
        def pre_process(self, input_data: Any, req: Request) -> Any:
            return float(input_data["x"])  # KeyError, ValueError: 400

        def infer(self, processed_data: Any) -> Any:
            return [2 * x for x in processed_data]

    app = Mest()
    app.add_inference_handler(Doubler(), "/double", max_batch_size=8, max_batch_delay_ms=HOUR_S * 1000)
    pipeline = app.pipelines[0]
    req = Request("POST", "/double")
    with pipeline.batcher.arrival(2) as wave:
        good: list[Any] = []
        thread = threading.Thread(target=lambda: good.append(pipeline.predict({"x": 21}, req, arrival=wave)))
        thread.daemon = True
        thread.start()
        wait_until(lambda: pipeline.batcher.queue_depth == 1, "the good input queued")
        with pytest.raises(BadRequest):
            pipeline.predict({"nope": 1}, req, arrival=wave)
        thread.join(LIMIT_S)
        assert good == [42.0]


def test_an_unbatched_queue_announces_nothing() -> None:
    batcher = Batcher(Model(batched=False), max_batch_size=1)
    with batcher.arrival() as arrival:
        assert arrival is batcher.arrival()  # one shared arrival: nothing to count, nothing to withdraw
        assert arrival.submit("x") == ("answer", "x")


# -- overload and deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_batch_size", [1, 4])
def test_a_full_queue_rejects_at_once_with_retry_after(max_batch_size: int) -> None:
    model = Model(batched=max_batch_size > 1)
    batcher = Batcher(model, max_batch_size=max_batch_size, max_queue=2)
    leader, gate = hold_leader(batcher, model)
    queued = [Call(batcher, "a"), Call(batcher, "b")]
    wait_until(lambda: batcher.queue_depth == 2, "2 requests queued")
    with pytest.raises(ServiceUnavailable) as info:
        batcher.submit("c")  # on this thread: returns at once, the model is still held
    assert info.value.headers["Retry-After"] == "1"
    assert "limit 2" in info.value.message
    assert batcher.stats().rejected_full == 1
    gate.set()
    assert leader.result() == ("answer", "leader")
    assert [c.result() for c in queued] == [("answer", "a"), ("answer", "b")]
    assert "c" not in model.seen


def test_a_request_that_times_out_in_the_queue_never_reaches_the_model(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=4, max_batch_delay_s=0.001)
    leader, gate = hold_leader(batcher, model)
    doomed = Call(batcher, "doomed", deadline=time.monotonic() + 0.05)
    with pytest.raises(GatewayTimeout):
        doomed.result()  # answered while the model is still busy with the leader
    assert batcher.queue_depth == 0
    gate.set()
    assert leader.result() == ("answer", "leader")
    assert Call(batcher, "after").result() == ("answer", "after")
    assert model.seen == ["leader", "after"]
    assert batcher.stats().expired_queued == 1


def test_a_leader_waiting_for_stragglers_times_out_without_running_the_model(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=8, max_batch_delay_s=HOUR_S)
    with batcher.arrival():  # a straggler that never comes
        lonely = Call(batcher, "lonely", deadline=time.monotonic() + 0.05)
        with pytest.raises(GatewayTimeout):
            lonely.result()
        assert model.seen == []
    assert Call(batcher, "next").result() == ("answer", "next")  # leadership was handed back


def test_an_answer_that_comes_after_the_deadline_is_a_timeout(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=4)
    deadline = time.monotonic() + 0.05
    gate = model.hold("slow")
    slow = Call(batcher, "slow", deadline=deadline)
    wait_until(lambda: time.monotonic() > deadline and "slow" in model.seen, "the deadline passed in infer")
    gate.set()
    with pytest.raises(GatewayTimeout):
        slow.result()
    assert batcher.stats().expired_late == 1


# -- failures ------------------------------------------------------------------------------------------


def test_an_infer_exception_fails_only_its_own_batch(model: Model) -> None:
    batcher = Batcher(model, max_batch_size=4, max_batch_delay_s=HOUR_S)
    model.fail_on.add("boom")
    leader, gate = hold_leader(batcher, model)
    doomed = [Call(batcher, x) for x in ("a", "boom", "b", "c")]  # one batch of 4, with the bad input
    wait_until(lambda: batcher.queue_depth == 4, "the doomed batch queued")
    gate.set()
    errors = []
    for call in doomed:
        with pytest.raises(InferenceError) as info:
            call.result()
        assert isinstance(info.value.__cause__, RuntimeError)
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 4  # each request has its own exception object
    assert leader.result() == ("answer", "leader")
    assert Call(batcher, "later").result() == ("answer", "later")  # the batcher goes on
    assert batcher.stats().failed_batches == 1


def test_a_wrong_length_batch_is_an_inference_error_naming_the_contract(model: Model) -> None:
    model.short = True
    batcher = Batcher(model, max_batch_size=4)
    with pytest.raises(BatchSizeMismatch) as info:
        Call(batcher, "x").result()
    assert isinstance(info.value, InferenceError)
    assert int(info.value.status) == 500
    assert "infer returned 0 results for a batch of 1" in info.value.message
    assert "one result per input" in info.value.message
    model.short = False
    assert Call(batcher, "y").result() == ("answer", "y")


def test_a_result_without_length_is_an_inference_error() -> None:
    batcher = Batcher(lambda items: (x for x in items), max_batch_size=4)
    with pytest.raises(BatchSizeMismatch, match="generator"):
        batcher.submit("x")


def test_a_mest_error_raised_by_infer_keeps_its_status() -> None:
    def infer(items: list[Any]) -> list[Any]:
        raise BadRequest("the model refuses this input")

    batcher = Batcher(infer, max_batch_size=4)
    with pytest.raises(BadRequest, match="refuses"):
        batcher.submit("x")


# -- through the pipeline ------------------------------------------------------------------------------


class Strict(PredictorBase):
    """pre_process rejects inputs without an int ``x``; infer doubles a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    def pre_process(self, input_data: Any, req: Any) -> Any:
        return int(input_data["x"])

    def infer(self, processed_data: Any) -> Any:
        self.batches.append(list(processed_data))
        return [2 * x for x in processed_data]

    def post_process(self, prediction: Any, req: Any) -> Any:
        return {"y": prediction}


@pytest.fixture
def strict_app() -> Iterator[tuple[TestClient, Strict]]:
    predictor = Strict()
    app = Mest()
    app.add_inference_handler(predictor, "/double", max_batch_size=8, max_batch_delay_ms=HOUR_S * 1000)
    yield TestClient(app), predictor


def test_a_failing_pre_process_withdraws_its_announcement(strict_app: tuple[TestClient, Strict]) -> None:
    client, predictor = strict_app
    assert client.post("/double", json={"nope": 1}).status_code == 400
    assert client.post("/double", json={"x": "not a number"}).status_code == 400
    # Had either failure left an announcement behind, this request would wait the hour-long delay for it.
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(client.post("/double", json={"x": 21})), daemon=True)
    thread.start()
    thread.join(LIMIT_S)
    assert done and done[0].status_code == 200 and done[0].json() == {"y": 42}
    assert predictor.batches == [[21]]


def test_pipeline_answers_503_and_504_as_json() -> None:
    model = Model(batched=False)

    class Held(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return model(processed_data)

    app = Mest()
    app.add_inference_handler(Held(), "/held", max_queue=1, timeout_s=0.2)
    client = TestClient(app)
    gate = model.hold("leader")
    results: dict[str, Any] = {}

    def post(name: str) -> None:
        results[name] = client.post("/held", json=name)

    threads = [threading.Thread(target=post, args=("leader",), daemon=True)]
    threads[0].start()
    wait_until(lambda: "leader" in model.seen, "the leader reached infer")
    threads.append(threading.Thread(target=post, args=("queued",), daemon=True))
    threads[1].start()
    wait_until(lambda: app.pipelines[0].batcher.queue_depth == 1, "one request queued")
    full = client.post("/held", json="rejected")
    assert full.status_code == 503
    assert full.headers["retry-after"] == "1"
    assert full.json()["code"] == "unavailable"
    threads[1].join(LIMIT_S)
    assert results["queued"].status_code == 504
    assert results["queued"].json()["code"] == "timeout"
    gate.set()
    threads[0].join(LIMIT_S)
    assert results["leader"].status_code == 504  # answered after its deadline
    assert model.seen == ["leader"]


# -- processes -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_fresh_queue(model: Model) -> None:
    """A fork while a parent thread is running the model (and holds the queue) must not stall the child."""
    batcher = Batcher(model, max_batch_size=4)
    assert batcher.submit("parent") == ("answer", "parent")
    gate = model.hold("held-in-parent")
    model.entered.clear()
    holder = threading.Thread(target=batcher.submit, args=("held-in-parent",), daemon=True)
    holder.start()
    assert model.entered.wait(LIMIT_S)  # the parent's model is busy: its queue has a leader
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                code = 0 if batcher.submit("child") == ("answer", "child") else 1
            except BaseException:
                code = 2
            os._exit(code)
        deadline = time.monotonic() + LIMIT_S
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child waited on the parent's queue")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        gate.set()
        holder.join(LIMIT_S)
