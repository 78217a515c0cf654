"""W1: the seed README's iris LogisticRegression, one row per request (``{"features": [4 floats]}``).

``BENCH_MAX_BATCH`` (default 1: unbatched) and ``BENCH_DELAY_MS`` configure the handler.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from benchstats import BatchLog, add_stats_route

from mest import Mest
from mest.predictors import PredictorBase

MODEL = Path(__file__).resolve().parents[2] / "examples" / "iris" / "models" / "logistic_regression.pkl"
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "1"))
DELAY_MS = float(os.environ.get("BENCH_DELAY_MS", "5"))


class Iris(PredictorBase):
    def __init__(self, log: BatchLog) -> None:
        super().__init__()
        self.log = log

    def setup(self) -> None:
        self.model = joblib.load(MODEL)

    def pre_process(self, input_data: Any, req: Any) -> Any:
        return [float(v) for v in input_data["features"]]

    def infer(self, processed_data: Any) -> Any:
        rows = [processed_data] if MAX_BATCH == 1 else processed_data
        started = time.perf_counter()
        probabilities = self.model.predict_proba(np.asarray(rows))
        self.log.record(len(rows), time.perf_counter() - started)
        return probabilities[0] if MAX_BATCH == 1 else probabilities

    def post_process(self, prediction: Any, req: Any) -> Any:
        return {"probability": prediction}


log = BatchLog()
app = Mest()
app.add_inference_handler(Iris(log), "/api/v1/predict", max_batch_size=MAX_BATCH, max_batch_delay_ms=DELAY_MS)
add_stats_route(app, log)
