"""A flood of requests that fail the same way logs one traceback, not one per request (docs/observability.md)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mest import Mest
from mest.observability import RepeatFilter
from mest.predictors import PredictorBase
from mest.testing import TestClient


class Strict(PredictorBase):
    """Fails inside ``infer`` for inputs of the wrong length, like scikit-learn does, on one of two lines."""

    def infer(self, processed_data: Any) -> Any:
        features = processed_data["features"]
        if len(features) == 2:
            raise ValueError(f"X has {len(features)} features, but the model expects 4")
        if len(features) == 3:
            raise ValueError("a different line, so a different fault")
        return {"sum": sum(features)}


def test_repeats_of_one_fault_log_one_traceback_while_metrics_count_all(caplog: pytest.LogCaptureFixture) -> None:
    app = Mest()
    app.add_inference_handler(Strict(), "/predict")
    client = TestClient(app)
    with caplog.at_level(logging.INFO, logger="mest"):
        for _ in range(25):
            assert client.post("/predict", json={"features": [1, 2]}).status_code == 500
        assert client.post("/predict", json={"features": [1, 2, 3]}).status_code == 500
        assert client.post("/predict", json={"features": [1, 2, 3, 4]}).status_code == 200
    faults = [r for r in caplog.records if r.name == "mest" and r.levelno >= logging.ERROR]
    assert len(faults) == 2, [r.getMessage() for r in faults]
    assert all(r.exc_info for r in faults)
    assert "different line" in str(faults[1].exc_info[1])  # type: ignore[index]
    metrics = client.get("/metrics").text
    assert 'mest_requests_total{method="POST",model="predict",route="/predict",status="500"} 26.0' in metrics
    assert 'mest_failures_total{model="predict",stage="infer",version=""} 26.0' in metrics


def test_a_repeat_after_the_interval_logs_a_summary_with_the_count() -> None:
    now = [0.0]
    repeats = RepeatFilter(interval=60.0, clock=lambda: now[0])
    assert repeats.check("fault") == 0  # the first: in full
    for _ in range(9):
        now[0] += 1
        assert repeats.check("fault") is None  # counted, not logged
    assert repeats.check("other") == 0  # another fault has its own count
    now[0] += 60
    assert repeats.check("fault") == 10  # a summary: this one and the 9 before it
    now[0] += 61
    assert repeats.check("fault") == 0  # rare again: in full


def test_the_filter_remembers_a_bounded_number_of_faults() -> None:
    repeats = RepeatFilter(max_keys=3, clock=lambda: 0.0)
    for key in range(5):
        assert repeats.check(key) == 0
    assert repeats.check(4) is None  # remembered
    assert repeats.check(0) == 0  # forgotten: the oldest went first
