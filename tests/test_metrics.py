"""GET /metrics in one process (TestClient), once per web-framework adapter: what each metric counts.

The multi-worker behaviour (sums over gunicorn's workers, a killed worker's counts kept) is in
tests/test_metrics_gunicorn.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mest import Mest
from mest.api import Request
from mest.observability import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS
from mest.predictors import PredictorBase
from mest.testing import Result, TestClient
from support.prom import needs_promtool, promtool_check, samples, total, value

MakeApp = Callable[..., Mest]


class Echo(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        if processed_data.get("explode"):
            raise RuntimeError("boom")
        return processed_data

    def pre_process(self, input_data: Any, req: Request) -> Any:
        if "bad" in input_data:
            raise ValueError("bad input")
        return input_data


class Gate(PredictorBase):
    """``infer`` waits until the test opens the gate; batched when registered so."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def infer(self, processed_data: Any) -> Any:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return processed_data


class BrokenSetup(PredictorBase):
    def setup(self) -> None:
        raise OSError("no weights here")

    def infer(self, processed_data: Any) -> Any:
        return processed_data


def metrics(client: TestClient) -> str:
    result = client.get("/metrics")
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("text/plain")
    return result.text


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def test_requests_are_counted_by_model_route_method_and_status(make_app: MakeApp) -> None:
    app = make_app()
    app.add_inference_handler(Echo(), "/echo")
    client = TestClient(app)
    for i in range(7):
        assert client.post("/echo", json={"i": i}).status_code == 200
    for _ in range(2):
        assert client.post("/echo", json={"bad": 1}).status_code == 400
    assert client.post("/echo", json={"explode": True}).status_code == 500
    assert client.get("/health/live").status_code == 200
    text = metrics(client)
    echo = {"model": "echo", "route": "/echo", "method": "POST"}
    assert value(text, "mest_requests_total", **echo, status="200") == 7
    assert value(text, "mest_requests_total", **echo, status="400") == 2
    assert value(text, "mest_requests_total", **echo, status="500") == 1
    assert value(text, "mest_requests_total", model="", route="/health/live", method="GET", status="200") == 1
    assert value(text, "mest_request_duration_seconds_count", **echo) == 10
    assert value(text, "mest_request_duration_seconds_sum", **echo) > 0


def test_stage_histograms(make_app: MakeApp) -> None:
    app = make_app()
    app.add_inference_handler(Echo(), "/echo")
    client = TestClient(app)
    for i in range(5):
        client.post("/echo", json={"i": i})
    client.post("/echo", json={"bad": 1})  # fails in pre_process: no stage after it
    client.post("/echo", json={"explode": True})  # fails in infer: no post_process
    text = metrics(client)
    model = {"model": "echo", "version": ""}
    count = "mest_stage_duration_seconds_count"
    assert value(text, count, **model, stage="pre_process") == 6
    assert value(text, count, **model, stage="queue_wait") == 6
    assert value(text, count, **model, stage="infer") == 6
    assert value(text, count, **model, stage="post_process") == 5
    bounds = sorted(
        float(dict(labels)["le"])
        for (name, labels) in samples(text)
        if name == "mest_stage_duration_seconds_bucket" and dict(labels)["stage"] == "infer"
    )
    assert bounds == [*LATENCY_BUCKETS, float("inf")]
    assert bounds[0] < 0.001 and bounds[-2] >= 10  # sub-millisecond to tens of seconds


def test_batch_sizes_of_a_batched_model(make_app: MakeApp, pool: ThreadPoolExecutor) -> None:
    app = make_app()
    gate = Gate()
    app.add_inference_handler(gate, "/gate", max_batch_size=8, max_batch_delay_ms=1)
    client = TestClient(app)
    pipeline = app.pipelines[0]
    first = pool.submit(client.post, "/gate", json={"n": 0})
    assert gate.entered.wait(20)
    queued = [pool.submit(client.post, "/gate", json={"n": n}) for n in (1, 2, 3)]
    wait_until(lambda: pipeline.batcher.queue_depth == 3, "three requests wait for the model")
    gate.gate.set()
    assert [f.result().status_code for f in [first, *queued]] == [200] * 4
    text = metrics(client)
    model = {"model": "gate", "version": ""}
    assert value(text, "mest_batch_size_count", **model) == 2  # a batch of 1, then one of 3
    assert value(text, "mest_batch_size_sum", **model) == 4
    assert value(text, "mest_batch_size_bucket", **model, le="1.0") == 1
    assert value(text, "mest_batch_size_bucket", **model, le="4.0") == 2
    assert value(text, "mest_stage_duration_seconds_count", **model, stage="infer") == 2
    assert value(text, "mest_stage_duration_seconds_count", **model, stage="queue_wait") == 4
    assert max(BATCH_SIZE_BUCKETS) >= 1024


def test_in_flight_and_queue_depth_while_the_model_is_busy(make_app: MakeApp, pool: ThreadPoolExecutor) -> None:
    app = make_app()
    gate = Gate()
    app.add_inference_handler(gate, "/gate")
    client = TestClient(app)
    pipeline = app.pipelines[0]
    running = pool.submit(client.post, "/gate", json={"n": 0})
    assert gate.entered.wait(20)
    waiting = [pool.submit(client.post, "/gate", json={"n": n}) for n in (1, 2)]
    wait_until(lambda: pipeline.batcher.queue_depth == 2, "two requests wait for the model")
    busy = metrics(client)
    gate.gate.set()
    assert [f.result().status_code for f in [running, *waiting]] == [200] * 3
    idle = metrics(client)
    route = {"model": "gate", "route": "/gate", "method": "POST"}
    assert value(busy, "mest_requests_in_flight", **route) == 3
    assert value(idle, "mest_requests_in_flight", **route) == 0
    assert value(busy, "mest_queue_depth", model="gate", version="") == 2
    assert value(idle, "mest_queue_depth", model="gate", version="") == 0


def test_queue_full_and_timeout_rejections(make_app: MakeApp, pool: ThreadPoolExecutor) -> None:
    app = make_app()
    gate = Gate()
    app.add_inference_handler(gate, "/gate", max_queue=1, timeout_s=0.2)
    client = TestClient(app)
    pipeline = app.pipelines[0]
    running = pool.submit(client.post, "/gate", json={"n": 0})
    assert gate.entered.wait(20)
    queued = pool.submit(client.post, "/gate", json={"n": 1})
    wait_until(lambda: pipeline.batcher.queue_depth == 1, "one request waits")
    full: Result = client.post("/gate", json={"n": 2})
    assert full.status_code == 503
    assert queued.result().status_code == 504  # its deadline passed while the model was busy
    gate.gate.set()
    assert running.result().status_code == 504  # answered by the model, but after its deadline
    text = metrics(client)
    model = {"model": "gate", "version": ""}
    assert value(text, "mest_rejections_total", **model, reason="queue_full") == 1
    assert value(text, "mest_rejections_total", **model, reason="timeout") == 2
    route = {"model": "gate", "route": "/gate", "method": "POST"}
    assert value(text, "mest_requests_total", **route, status="503") == 1
    assert value(text, "mest_requests_total", **route, status="504") == 2


def test_model_ready_and_not_ready(make_app: MakeApp) -> None:
    app = make_app()
    app.add_inference_handler(Echo(), "/echo")
    app.add_inference_handler(BrokenSetup(), "/broken", name="broken", version="2")
    client = TestClient(app)
    assert client.post("/echo", json={}).status_code == 200
    assert client.post("/broken", json={}).status_code == 503
    assert client.post("/broken", json={}).status_code == 503
    text = metrics(client)
    assert value(text, "mest_model_ready", model="echo", version="") == 1
    assert value(text, "mest_model_ready", model="broken", version="2") == 0
    assert value(text, "mest_rejections_total", model="broken", version="2", reason="not_ready") == 2


def test_readiness_of_a_setup_run_before_the_first_request_is_shown(make_app: MakeApp) -> None:
    # A setup run before the process served anything (a warm-up, a post_fork hook) reports its readiness before
    # this process's metrics exist; it must still appear once they do.
    app = make_app()
    app.add_inference_handler(Echo(), "/echo")
    app.add_inference_handler(BrokenSetup(), "/broken", name="broken")
    assert app.pipelines[0].ensure_setup() and not app.pipelines[1].ensure_setup()
    text = metrics(TestClient(app))
    assert value(text, "mest_model_ready", model="echo", version="") == 1
    assert value(text, "mest_model_ready", model="broken", version="") == 0


def test_unmatched_requests_share_one_bounded_label_set(make_app: MakeApp) -> None:
    app = make_app()
    client = TestClient(app)
    for i in range(3):
        assert client.get(f"/no/such/path/{i}").status_code == 404
    assert client.request("BREW", "/coffee").status_code in (404, 405)
    text = metrics(client)
    assert value(text, "mest_requests_total", model="", route="(unmatched)", method="GET", status="404") == 3
    assert total(text, "mest_requests_total", route="(unmatched)", method="other") == 1
    assert not any("/no/such/path" in labels_value for (_, labels) in samples(text) for _, labels_value in labels)


def test_openmetrics_when_the_scraper_asks_for_it(make_app: MakeApp) -> None:
    app = make_app()
    client = TestClient(app)
    result = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/openmetrics-text")
    assert result.text.endswith("# EOF\n")


def test_metrics_path_can_be_moved_or_switched_off(make_app: MakeApp) -> None:
    moved = make_app(metrics_path="/internal/prometheus")
    client = TestClient(moved)
    assert client.get("/metrics").status_code == 404
    assert "mest_requests_total" in client.get("/internal/prometheus").text
    off = make_app(metrics_path=None)
    off.add_inference_handler(Echo(), "/echo")
    client = TestClient(off)
    assert client.post("/echo", json={}).status_code == 200
    assert client.get("/metrics").status_code == 404
    assert off.pipelines[0].batcher is not None and ("GET", "/metrics") not in off.routes()


@needs_promtool
def test_promtool_accepts_the_exposition(make_app: MakeApp, pool: ThreadPoolExecutor) -> None:
    app = make_app()
    app.add_inference_handler(Echo(), "/echo")
    app.add_inference_handler(BrokenSetup(), "/broken")
    gate = Gate()
    app.add_inference_handler(gate, "/gate", max_batch_size=4, max_queue=1)
    client = TestClient(app)
    client.post("/echo", json={})
    client.post("/echo", json={"bad": 1})
    client.post("/broken", json={})
    client.get("/nowhere")
    gate.gate.set()
    client.post("/gate", json={})
    text = metrics(client)
    for name in ("mest_requests_total", "mest_request_duration_seconds_bucket", "mest_requests_in_flight",
                 "mest_stage_duration_seconds_bucket", "mest_batch_size_bucket", "mest_queue_depth",
                 "mest_rejections_total", "mest_model_ready"):
        assert any(sample_name == name for sample_name, _ in samples(text)), name
    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""


def test_observability_facade() -> None:
    import mest.observability as facade

    assert len(set(facade.__all__)) == len(facade.__all__)  # the order is ruff's (RUF022)
    assert all(hasattr(facade, name) for name in facade.__all__)
