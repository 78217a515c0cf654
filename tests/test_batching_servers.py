"""Batching, backpressure and timeouts under every server Mest runs on: the dev server (threads), gunicorn
gthread and gunicorn gevent (greenlets). One server of each kind serves ``tests/apps/batching_app.py`` for the
whole module; each test uses ids of its own, so tests don't see each other's requests.

No timing assertions: requests are held at gates inside the app (released through ``/control``) to make
queueing deterministic, and every wait is bounded (client timeouts, ``LIMIT_S``) so a regression fails.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from support.servers import RunningServer, dev_server, gunicorn

pytestmark = pytest.mark.server

LIMIT_S = 30.0


@pytest.fixture(scope="module", params=["dev", "gthread", "gevent"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    if request.param == "dev":
        with dev_server("batching_app.py") as running:
            yield running
    else:
        with gunicorn("batching_app:app", worker_class=request.param, workers=1, threads=32) as running:
            yield running


class Session:
    """Posts to one server from many threads (an httpx client per thread: httpx clients are not shared)."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.prefix = uuid.uuid4().hex[:8]
        self.pool = ThreadPoolExecutor(max_workers=24)
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()

    def id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.server.client()
            with self._clients_lock:
                self._clients.append(client)
        return client  # type: ignore[no-any-return]

    def post(self, route: str, body: Any) -> httpx.Response:
        return self.client().post(route, json=body)

    def post_async(self, route: str, body: Any) -> Any:
        return self.pool.submit(self.post, route, body)

    def control(self, **body: Any) -> Any:
        response = self.post("/control", body)
        assert response.status_code == 200, response.text
        return response.json()

    def state(self, route: str) -> Any:
        return self.control(op="state", route=route)

    def release(self, gate: str) -> None:
        self.control(op="release", gate=gate)

    def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + LIMIT_S
        while not predicate():
            assert time.monotonic() < deadline, f"never happened: {what}\n{self.server.output[-3000:]}"
            time.sleep(0.01)

    def hold_in_infer(self, route: str, name: str) -> tuple[Any, str]:
        """Send a request that stays inside infer until released; return its future and its gate."""
        ident, gate = self.id(name), self.id(name + "-gate")
        future = self.post_async(route, {"id": ident, "gate": gate})
        self.wait_until(lambda: ident in self.state(route)["seen"], f"{ident} reached infer")
        return future, gate

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for client in self._clients:
            client.close()


@pytest.fixture
def session(server: RunningServer) -> Iterator[Session]:
    s = Session(server)
    yield s
    s.close()


def result(future: Any) -> httpx.Response:
    return future.result(timeout=LIMIT_S)  # type: ignore[no-any-return]


def test_concurrent_clients_each_get_their_own_answer(session: Session) -> None:
    clients, per_client = 16, 12

    def client(c: int) -> list[str]:
        problems = []
        for i in range(per_client):
            mine = session.id(f"c{c}-r{i}")
            response = session.post("/batched", {"id": mine})
            body = response.json()
            if response.status_code != 200 or body["id"] != mine or mine not in body["batch"]:
                problems.append(f"{mine}: {response.status_code} {body}")
            if not 1 <= len(body.get("batch", [])) <= 8:
                problems.append(f"{mine}: batch of {len(body['batch'])}")
        return problems

    futures = [session.pool.submit(client, c) for c in range(clients)]
    problems = [p for f in futures for p in f.result(timeout=LIMIT_S * 2)]
    assert problems == []
    seen = [x for x in session.state("/batched")["seen"] if x.startswith(session.prefix)]
    assert sorted(seen) == sorted({session.id(f"c{c}-r{i}") for c in range(clients) for i in range(per_client)})


def test_requests_queued_behind_a_busy_model_form_batches(session: Session) -> None:
    leader, gate = session.hold_in_infer("/batched", "leader")
    names = [session.id(f"q{i}") for i in range(8)]
    futures = [session.post_async("/batched", {"id": name}) for name in names]
    session.wait_until(lambda: session.state("/batched")["stats"]["queued"] == 8, "8 requests queued")
    session.release(gate)
    assert result(leader).json()["batch"] == [session.id("leader")]
    for name, future in zip(names, futures, strict=True):
        body = result(future).json()
        assert body["id"] == name
        assert sorted(body["batch"]) == sorted(names)  # all eight in one batch
    batches = [b for b in session.state("/batched")["batches"] if b[0].startswith(session.prefix)]
    assert [len(b) for b in batches] == [1, 8]


def test_full_queue_answers_503_with_retry_after(session: Session) -> None:
    leader, gate = session.hold_in_infer("/limited", "leader")
    before = session.state("/limited")["stats"]["rejected_full"]
    queued = [session.post_async("/limited", {"id": session.id(f"q{i}")}) for i in range(2)]
    session.wait_until(lambda: session.state("/limited")["stats"]["queued"] == 2, "2 requests queued")
    refused = session.post("/limited", {"id": session.id("refused")})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["code"] == "unavailable"
    assert session.state("/limited")["stats"]["rejected_full"] == before + 1
    session.release(gate)
    assert result(leader).json()["id"] == session.id("leader")
    assert [result(f).json()["id"] for f in queued] == [session.id("q0"), session.id("q1")]
    assert session.id("refused") not in session.state("/limited")["seen"]


def test_timed_out_request_gets_504_and_never_reaches_the_model(session: Session) -> None:
    leader, gate = session.hold_in_infer("/timed", "leader")
    late = session.post("/timed", {"id": session.id("late")})  # queued behind the held batch, then expires
    assert late.status_code == 504
    assert late.json()["code"] == "timeout"
    session.release(gate)
    assert result(leader).status_code == 504  # its answer came after its deadline
    fresh = session.post("/timed", {"id": session.id("fresh")})
    assert fresh.status_code == 200 and fresh.json()["id"] == session.id("fresh")
    seen = session.state("/timed")["seen"]
    assert session.id("late") not in seen
    assert session.id("leader") in seen and session.id("fresh") in seen


def test_a_failing_batch_fails_only_its_requests_and_the_worker_goes_on(session: Session) -> None:
    leader, gate = session.hold_in_infer("/batched", "leader")
    doomed = [session.id(x) for x in ("a", "boom", "b")]
    futures = [session.post_async("/batched", {"id": d, "fail": d.endswith("boom")}) for d in doomed]
    session.wait_until(lambda: session.state("/batched")["stats"]["queued"] == 3, "3 requests queued")
    session.release(gate)
    ok = result(leader)
    assert ok.status_code == 200 and ok.json()["id"] == session.id("leader")
    for future in futures:
        failed = result(future)
        assert failed.status_code == 500
        assert failed.json()["code"] == "inference_error"
    after = session.post("/batched", {"id": session.id("after")})
    assert after.status_code == 200 and after.json()["id"] == session.id("after")
    assert after.json()["pid"] == ok.json()["pid"]  # the same worker process served on
    assert "the model exploded on purpose" in session.server.output


def test_a_wrong_length_batch_is_a_500_with_a_clear_log_line(session: Session) -> None:
    response = session.post("/short", {"id": session.id("x")})
    assert response.status_code == 500
    assert "infer returned 0 results for a batch of 1" in response.json()["error"]
    session.server.wait_for_output("infer returned 0 results for a batch of 1")


def test_bad_input_fails_alone_and_leaves_no_phantom_behind(session: Session) -> None:
    assert session.post("/patient", {"no_id": 1}).status_code == 400
    assert session.post("/patient", {"id": 5}).status_code == 400
    # /patient waits up to a minute for announced requests: a leaked announcement would hold this one.
    ok = session.post("/patient", {"id": session.id("alone")})
    assert ok.status_code == 200 and ok.json()["batch"] == [session.id("alone")]


def test_waiting_for_a_batch_leaves_the_server_responsive(session: Session) -> None:
    straggler_gate = session.id("pre")
    straggler = session.post_async("/patient", {"id": session.id("straggler"), "pre_gate": straggler_gate})
    session.wait_until(lambda: straggler_gate in session.state("/patient")["waiting"], "straggler in pre_process")
    leader = session.post_async("/patient", {"id": session.id("leader")})
    session.wait_until(lambda: session.state("/patient")["stats"]["queued"] == 1, "leader waits for it")
    # The leader is waiting for its batch to fill: under gevent that wait must yield to the event loop.
    for _ in range(3):
        assert session.client().get("/health/live").status_code == 200
    assert not leader.done()
    session.release(straggler_gate)
    both = sorted([session.id("leader"), session.id("straggler")])
    assert sorted(result(leader).json()["batch"]) == both
    assert sorted(result(straggler).json()["batch"]) == both
