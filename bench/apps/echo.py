"""A trivial predictor (sums four floats), so a benchmark measures the serving path, not a model."""

from __future__ import annotations

from typing import Any

from mest import Mest
from mest.predictors import PredictorBase


class Sum(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        return {"sum": sum(processed_data["features"])}


app = Mest()
app.add_inference_handler(Sum(), "/sum")
