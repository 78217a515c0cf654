"""A ``/bench/stats`` route for the benchmark apps: the batch sizes the predictor saw, with timestamps.

The load generator's driver reads it after a run to know which batch sizes actually formed during the
measured window (the model-only ceiling is measured at exactly those sizes) and how much of the window the
worker spent inside the model.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from mest import Mest
from mest.predictors import PredictorBase


class BatchLog:
    """Records ``(time.time(), size, seconds spent in the model)`` for every ``infer`` call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[tuple[float, int, float]] = []

    def record(self, size: int, seconds: float) -> None:
        with self._lock:
            self.entries.append((time.time(), size, seconds))


class StatsPredictor(PredictorBase):
    def __init__(self, log: BatchLog, app: Mest) -> None:
        super().__init__()
        self.log = log
        self.app = app

    def infer(self, processed_data: Any) -> Any:
        batchers = {p.config.name: vars(p.batcher.stats()) for p in self.app.pipelines}
        return {"pid": os.getpid(), "batches": self.log.entries, "batchers": batchers}


def add_stats_route(app: Mest, log: BatchLog) -> None:
    app.add_inference_handler(StatsPredictor(log, app), "/bench/stats")
