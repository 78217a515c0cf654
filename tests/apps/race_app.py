"""An unbatched model whose ``infer`` releases the GIL (as numpy, scikit-learn and torch do), with a tiny switch
interval in every serving process, for the queue race tests (tests/test_batching_race.py). Each answer names the
request it answers."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from mest import Mest
from mest.predictors import PredictorBase

sys.setswitchinterval(1e-6)
_MATRIX = np.random.default_rng(0).random((48, 48))


class Echo(PredictorBase):
    def pre_process(self, input_data: Any, req: Any) -> Any:
        return input_data["id"]

    def infer(self, processed_data: Any) -> Any:
        _MATRIX @ _MATRIX  # BLAS releases the GIL
        return processed_data

    def post_process(self, prediction: Any, req: Any) -> Any:
        return {"id": prediction}


app = Mest()
app.add_inference_handler(Echo(), "/predict")

if __name__ == "__main__":
    app.run()
