"""Signals to real gunicorn processes under a bounded load, counting every request (docs/production.md).

Each scenario runs against ``mest serve`` and against the seed's plain ``gunicorn -k gevent`` command, serving
``tests/apps/lifecycle_app.py``. That app records every request it starts (``started.log``), so "accepted"
means "reached the app": the invariant checked everywhere is that every accepted request got its complete,
correct answer, and that every other request failed only at the connection level (refused or reset before
the server read it), never with a half answer or a 5xx. Requests can be held in ``infer`` (and queued behind
it) until the test opens a gate, so signals arrive while requests are provably in flight: no sleeps, no
timing assertions.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.mest_serve import children, gunicorn_argv, mest_argv, running, wait_for
from support.servers import RunningServer

pytestmark = pytest.mark.server

WORKERS = 2
HELD = 4  # requests held in flight (one in infer per worker, the rest queued behind it)
LOADERS = 3  # threads sending quick requests throughout
GRACEFUL = "60"  # far longer than any wait below: a drain that ends by timing out fails the test
LAUNCHERS = {
    "mest-gevent": lambda: mest_argv(
        "lifecycle_app:app", "-w", str(WORKERS), "-k", "gevent", "--graceful-timeout", GRACEFUL
    ),
    "mest-gthread": lambda: mest_argv(
        "lifecycle_app:app", "-w", str(WORKERS), "-k", "gthread", "--threads", "8", "--graceful-timeout", GRACEFUL
    ),
    "mest-granian": lambda: mest_argv(
        "lifecycle_app:app", "--server", "granian", "-w", str(WORKERS), "--threads", "8", "--graceful-timeout", GRACEFUL
    ),
    "gunicorn-gevent": lambda: gunicorn_argv(
        "lifecycle_app:app", "-w", str(WORKERS), "-k", "gevent", "--graceful-timeout", GRACEFUL
    ),
}


@dataclass
class Load:
    """Bounded background load: ``LOADERS`` threads, one new connection per request, every outcome counted."""

    url: str
    ok: dict[str, dict[str, object]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    wrong: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, limit: int) -> None:
        # No keep-alive: a reused connection closed by a stopping worker is a client-side race, not a loss.
        with httpx.Client(timeout=60.0, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for _ in range(limit):
                if self._stop.is_set():
                    return
                with self._lock:
                    request_id = f"load-{next(self._ids)}"
                try:
                    response = client.post(self.url + "/quick", json={"id": request_id})
                except httpx.TransportError as exc:
                    self.failed[request_id] = type(exc).__name__
                    continue
                body = response.json() if response.status_code == 200 else {}
                if body.get("id") != request_id:  # asserted by the test thread (see ``stop``)
                    self.wrong[request_id] = f"{response.status_code} {response.text[:200]}"
                    return
                self.ok[request_id] = body

    def start(self, limit: int = 20000) -> Load:
        for _ in range(LOADERS):
            thread = threading.Thread(target=self._run, args=(limit,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)
            assert not thread.is_alive(), "a load thread is stuck"
        assert not self.wrong, f"answers that were not a complete, correct 200: {self.wrong}"

    def total(self) -> int:
        return len(self.ok) + len(self.failed)


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """The app's LIFECYCLE_DIR, with the gate closed."""
    (tmp_path / "gate-closed").touch()
    return tmp_path


@contextlib.contextmanager
def serve(launcher: str, lab: Path) -> Iterator[RunningServer]:
    with running(LAUNCHERS[launcher](), env={"LIFECYCLE_DIR": str(lab)}) as server:
        yield server


def started(lab: Path) -> list[str]:
    log = lab / "started.log"
    return log.read_text().split() if log.exists() else []


def hold(pool: ThreadPoolExecutor, url: str, count: int, prefix: str) -> list[Future[httpx.Response]]:
    def send(request_id: str) -> httpx.Response:
        return httpx.post(url + "/held", json={"id": request_id}, timeout=90.0)

    return [pool.submit(send, f"{prefix}-{i}") for i in range(count)]


def refused(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except (ConnectionRefusedError, ConnectionResetError):
        # Either way the connection was never accepted: a SYN that reached the listening socket's queue as it
        # closed is answered with a reset instead of a refusal.
        return True
    return False


def assert_nothing_accepted_was_lost(lab: Path, answered: set[str]) -> None:
    lost = set(started(lab)) - answered
    assert not lost, f"requests reached the app but got no answer: {sorted(lost)}"


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_sigterm_drains_in_flight_and_queued_requests_and_refuses_new_connections(launcher: str, lab: Path) -> None:
    with serve(launcher, lab) as server, ThreadPoolExecutor(HELD) as pool:
        held = hold(pool, server.url, HELD, "held")
        wait_for(lambda: len(started(lab)) == HELD, 30, "the held requests to reach the app", server)
        load = Load(server.url).start()
        wait_for(lambda: len(load.ok) >= 5, 30, "the load to be served", server)

        os.kill(server.pid, signal.SIGTERM)
        wait_for(lambda: refused(server.url), 20, "new connections to be refused", server)
        # Refused while the held requests are still in flight: they wait for the gate, whatever the timing.
        assert not any(future.done() for future in held)
        (lab / "gate-closed").unlink()

        answers = [future.result(timeout=60) for future in held]
        load.stop()
        assert server.process.wait(60) == 0, server.output

    assert [a.status_code for a in answers] == [200] * HELD
    assert sorted(a.json()["id"] for a in answers) == sorted(f"held-{i}" for i in range(HELD))
    assert_nothing_accepted_was_lost(lab, {f"held-{i}" for i in range(HELD)} | set(load.ok))
    assert load.ok and load.total() == len(load.ok) + len(load.failed)
    # Failed ones never reached the app (checked above) and failed at the connection level only.
    assert set(load.failed.values()) <= {"ConnectError", "ReadError", "RemoteProtocolError", "WriteError"}


@pytest.mark.parametrize("launcher", ["mest-gevent", "mest-granian", "gunicorn-gevent"])
def test_sighup_replaces_workers_with_new_code_without_dropping_a_request(launcher: str, lab: Path) -> None:
    with serve(launcher, lab) as server, ThreadPoolExecutor(HELD) as pool:
        old_workers = children(server.pid)
        assert len(old_workers) == WORKERS
        held = hold(pool, server.url, HELD, "held")
        wait_for(lambda: len(started(lab)) == HELD, 30, "the held requests to reach the app", server)
        load = Load(server.url).start()
        wait_for(lambda: len(load.ok) >= 5, 30, "the load to be served", server)

        (lab / "generation.txt").write_text("2")
        os.kill(server.pid, signal.SIGHUP)
        wait_for(
            lambda: any(body["generation"] == "2" for body in list(load.ok.values())),
            60, "new workers, running the new code, to answer", server,
        )
        assert not any(future.done() for future in held)  # the old workers are still draining them
        (lab / "gate-closed").unlink()
        answers = [future.result(timeout=60) for future in held]
        wait_for(lambda: not (children(server.pid) & old_workers), 60, "the old workers to exit", server)
        ok_before = len(load.ok)
        wait_for(lambda: len(load.ok) >= ok_before + 5, 30, "the new workers to keep serving", server)
        load.stop()
        new_workers = children(server.pid)

    assert len(new_workers) == WORKERS and not new_workers & old_workers
    assert [a.status_code for a in answers] == [200] * HELD
    assert {a.json()["generation"] for a in answers} == {"1"}  # finished by the old code that accepted them
    if launcher == "mest-granian":
        # granian's reload is not hitless (docs/production.md): a connection arriving while it swaps workers can
        # be refused or reset, always before the app reads it (checked below).
        assert set(load.failed.values()) <= {"ConnectError", "ReadError", "RemoteProtocolError", "WriteError"}
    else:
        # The listening socket never closed: not a single request failed, not even at the connection level.
        assert load.failed == {}
    assert_nothing_accepted_was_lost(lab, {f"held-{i}" for i in range(HELD)} | set(load.ok))
    assert {body["pid"] for body in load.ok.values()} & new_workers


@pytest.mark.parametrize("launcher", ["mest-gevent", "mest-granian", "gunicorn-gevent"])
def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(launcher: str, lab: Path) -> None:
    (lab / "gate-closed").unlink()
    with serve(launcher, lab) as server:
        workers = children(server.pid)
        assert len(workers) == WORKERS
        load = Load(server.url).start()
        wait_for(lambda: len(load.ok) >= 5, 30, "the load to be served", server)
        if launcher == "mest-granian":
            # Each granian worker listens on its own SO_REUSEPORT socket, opened once it has started: on a busy
            # machine one may still be starting when the first answers arrive, and killing the only listening
            # one refuses everything until its replacement listens. Kill one only once every worker answers.
            wait_for(lambda: {body["pid"] for body in list(load.ok.values())} >= workers, 60,
                     "every worker to answer", server)

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        # One snapshot per check: a victim still dying is in one read of /proc and gone from the next.
        snapshot: set[int] = set()

        def replacement_started() -> bool:
            snapshot.clear()
            snapshot.update(children(server.pid))
            return len(snapshot) == WORKERS and victim not in snapshot and bool(snapshot - workers)

        wait_for(replacement_started, 60, "a replacement worker", server)
        replacement = (snapshot - workers).pop()
        wait_for(
            lambda: any(body["pid"] == replacement for body in list(load.ok.values())),
            60, "the replacement worker to answer", server,
        )
        ok_before, failed_before = len(load.ok), len(load.failed)
        wait_for(lambda: len(load.ok) >= ok_before + 20, 30, "more answers after the replacement", server)
        failed_after_replacement = len(load.failed) - failed_before
        load.stop()

    # Only what the killed worker was handling at that instant can fail: at most one request per load thread.
    # granian on Linux gives each worker its own SO_REUSEPORT listening socket (gunicorn's share one): a
    # connection the kernel had queued on the killed worker's socket, or whose handshake was under way when
    # the set of sockets changed (the victim gone, its replacement added), is refused or reset before any
    # worker reads it (docs/cli.md): at most one per load thread at each of those two instants.
    granian = launcher == "mest-granian"
    assert len(load.failed) <= LOADERS * (2 if granian else 1), load.failed
    assert set(load.failed.values()) <= {"ReadError", "RemoteProtocolError"} | ({"ConnectError"} if granian else set())
    assert failed_after_replacement == 0
    unanswered = set(started(lab)) - set(load.ok)
    assert unanswered <= set(load.failed), "a request that reached a live worker went unanswered"
