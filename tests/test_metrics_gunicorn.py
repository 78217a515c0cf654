"""GET /metrics under real gunicorn (and ``mest serve --server granian``) with several workers and no
configuration: the numbers are sums over the workers, a worker killed with SIGKILL keeps its counts, and the
output passes ``promtool check metrics``."""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import time
from collections.abc import Callable

import httpx
import pytest

from support.mest_serve import mest_argv, running
from support.prom import needs_promtool, promtool_check, total, value
from support.servers import RunningServer, gunicorn

pytestmark = pytest.mark.server

ECHO = {"model": "echo", "route": "/echo", "method": "POST"}
METRICS_ROOT = os.path.join(tempfile.gettempdir(), f"mest-metrics-{os.getuid()}")


def workers_of(master: int) -> set[int]:
    """The live children of a process, from /proc."""
    found = set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(master) and fields[0] != "Z":
            found.add(int(stat.split("/")[2]))
    return found


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def spread_requests(server: RunningServer, workers: int, at_least: int = 30, at_most: int = 900) -> dict[int, int]:
    """POST /echo on fresh connections until every worker answered some; return {worker pid: requests}."""
    served: dict[int, int] = {}
    sent = 0
    while sent < at_least or (len(served) < workers and sent < at_most):
        with httpx.Client(base_url=server.url, timeout=30) as http:  # a new connection: any worker may accept
            response = http.post("/echo", json={"n": sent})
        assert response.status_code == 200, response.text
        pid = response.json()["pid"]
        served[pid] = served.get(pid, 0) + 1
        sent += 1
    assert len(served) == workers, f"{sent} requests reached only workers {sorted(served)}"
    return served


def scrape(server: RunningServer) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent", "granian"])
def test_counters_add_up_over_workers(worker_class: str) -> None:
    if worker_class == "granian":  # `mest serve --server granian`: its master's pid names the shared directory
        serving = running(mest_argv("observed_app:app", "--server", "granian", "-w", "3"))
    else:
        serving = gunicorn("observed_app:app", worker_class=worker_class, workers=3)
    with serving as server:
        served = spread_requests(server, workers=3)
        sent = sum(served.values())
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.post("/sum", json={"features": [1, 2]}).status_code == 200
            assert http.post("/sum", json={"features": []}).status_code == 422
        for _ in range(6):  # each scrape may be answered by another worker: every one sees the same sums
            text = scrape(server)
            assert value(text, "mest_requests_total", **ECHO, status="200") == sent
            assert value(text, "mest_request_duration_seconds_count", **ECHO) == sent
            assert value(text, "mest_stage_duration_seconds_count", model="echo", version="", stage="infer") == sent
            assert value(text, "mest_requests_total", model="sum", route="/sum", method="POST", status="422") == 1
            assert value(text, "mest_batch_size_count", model="sum", version="") == 1
            assert value(text, "mest_requests_in_flight", **ECHO) == 0
            assert value(text, "mest_model_ready", model="echo", version="") == 1


def test_recycled_workers_keep_their_counts_with_preload() -> None:
    # --max-requests replaces each worker after a few requests; --preload imports the app in the master.
    args = ["--max-requests", "7", "--preload"]
    with gunicorn("observed_app:app", workers=2, extra_args=args) as server:
        pids = set()
        for n in range(40):
            with server.client() as http:
                response = http.post("/echo", json={"n": n})
            assert response.status_code == 200
            pids.add(response.json()["pid"])
        assert len(pids) > 2  # workers were replaced
        text = scrape(server)
        assert value(text, "mest_requests_total", **ECHO, status="200") == 40
        assert value(text, "mest_requests_in_flight", **ECHO) == 0


def test_a_killed_worker_keeps_its_counts_and_leaves_no_live_gauges() -> None:
    with gunicorn("observed_app:app", worker_class="sync", workers=3) as server:
        served = spread_requests(server, workers=3)
        sent = sum(served.values())
        assert value(scrape(server), "mest_requests_total", **ECHO, status="200") == sent
        victim = max(served, key=lambda pid: served[pid])
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in workers_of(server.pid) and len(workers_of(server.pid)) == 3,
                   "gunicorn replaced the killed worker")
        after_kill = scrape(server)
        assert value(after_kill, "mest_requests_total", **ECHO, status="200") == sent
        assert value(after_kill, "mest_request_duration_seconds_count", **ECHO) == sent
        assert value(after_kill, "mest_requests_in_flight", **ECHO) == 0
        assert value(after_kill, "mest_model_ready", model="echo", version="") == 1

        more = spread_requests(server, workers=3, at_least=10)
        text = scrape(server)
        assert value(text, "mest_requests_total", **ECHO, status="200") == sent + sum(more.values())

        # The dead worker's files were folded into the archives: the directory does not grow with restarts.
        directory = glob.glob(os.path.join(METRICS_ROOT, f"{server.pid}-*")) or glob.glob(
            os.path.join(METRICS_ROOT, str(server.pid))
        )
        assert len(directory) == 1
        files = os.listdir(directory[0])
        assert not [name for name in files if name.endswith(f"_{victim}.db")], files
        assert "counter_archive.db" in files and "histogram_archive.db" in files


def test_a_new_master_removes_the_directories_of_masters_that_are_gone() -> None:
    with gunicorn("observed_app:app", workers=1) as first:
        scrape(first)
        old = glob.glob(os.path.join(METRICS_ROOT, f"{first.pid}-*")) or glob.glob(
            os.path.join(METRICS_ROOT, str(first.pid))
        )
        assert len(old) == 1
    assert os.path.isdir(old[0])  # gunicorn stopped; nothing of ours ran to clean up
    with gunicorn("observed_app:app", workers=1) as second:
        text = scrape(second)
        assert not os.path.exists(old[0])
        assert total(text, "mest_requests_total", route="/echo") == 0  # nothing carried over from the old master


@needs_promtool
def test_promtool_accepts_the_multiprocess_exposition() -> None:
    with gunicorn("observed_app:app", worker_class="sync", workers=2) as server:
        spread_requests(server, workers=2, at_least=5)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post("/boom", json={})
            http.post("/sum", json={"features": [1.0]})
            http.get("/not/here")
        text = scrape(server)
    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert value(text, "mest_requests_total", model="boom", route="/boom", method="POST", status="500") == 1
