"""Models served over the Open Inference Protocol by the V2 tests: in-process and under real gunicorn.

``register_models(app)`` adds them to any app (the in-process tests build theirs on each web-framework
adapter); ``app`` is what ``gunicorn v2_app:app`` serves. ``WITH_BROKEN_SETUP=1`` adds a model whose setup
fails, so the server is live but not ready.
"""

import os
from pathlib import Path

import joblib
import numpy as np

from mest import Mest
from mest.predictors import PredictorBase
from mest.tensors import TensorSpec

IRIS_MODEL = Path(__file__).resolve().parents[2] / "examples" / "iris" / "models" / "logistic_regression.pkl"
MAX_BODY_SIZE = 4 * 1024 * 1024


class MyPredictor(PredictorBase):
    """The seed README's predictor, unchanged but for the model's path: it knows nothing of V2."""

    def __init__(self):
        self.model = joblib.load(IRIS_MODEL)

    def pre_process(self, input_data, req):
        return input_data["features"]

    def infer(self, processed_data):
        return self.model.predict_proba(processed_data)[0]

    def post_process(self, prediction, req):
        return {"probability": prediction}


class Echo(PredictorBase):
    """No declarations: every input comes back as an output of the same name, datatype and shape."""

    def infer(self, processed_data):
        return processed_data


class Scaler(PredictorBase):
    """Declared tensors; ``y = (x + offset) * factor``, ``offset`` from the request's parameters."""

    inputs = [TensorSpec("x", "FP32", [-1, 3])]
    outputs = [TensorSpec("y", "FP32", [-1, 3]), TensorSpec("total", "FP64", [-1])]

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def pre_process(self, input_data, req):
        # V2 puts the request's parameters on req.context; the own route has none.
        return np.asarray(input_data["x"], dtype=np.float32) + np.float32(
            req.context.get("parameters", {}).get("offset", 0)
        )

    def infer(self, processed_data):
        y = processed_data * np.float32(self.factor)
        return {"y": y, "total": y.sum(axis=1)}  # total is float32: sent as the declared FP64


class Norms(PredictorBase):
    """Batched (``infer`` takes a list); returns one bare number, sent as the single declared output."""

    inputs = [TensorSpec("x", "FP64", [-1])]
    outputs = [TensorSpec("norm", "FP64", [])]

    def pre_process(self, input_data, req):
        return input_data["x"]

    def infer(self, processed_data):
        return [float(np.linalg.norm(x)) for x in processed_data]


class Parity(PredictorBase):
    """Outputs computed from an INT64 input: a BOOL array and a BYTES array built from Python strings."""

    inputs = [TensorSpec("n", "INT64", [-1])]

    def infer(self, processed_data):
        n = processed_data["n"]
        return {"even": n % 2 == 0, "word": ["even" if v % 2 == 0 else "odd" for v in n.tolist()]}


class BrokenSetup(PredictorBase):
    def setup(self):
        raise FileNotFoundError("/secret/weights/model.bin")

    def infer(self, processed_data):
        return processed_data


def register_models(app, *, broken=False):
    """Register every test model on ``app`` (``scaler`` twice: versions 1 and 2)."""
    app.add_inference_handler(MyPredictor(), "/api/v1/predict", name="iris")
    app.add_inference_handler(Echo(), "/echo", name="echo")
    app.add_inference_handler(Scaler(1.0), "/scaler/v1", name="scaler", version="1")
    app.add_inference_handler(Scaler(2.0), "/scaler/v2", name="scaler", version="2")
    app.add_inference_handler(Norms(), "/norms", name="norms", max_batch_size=8, max_batch_delay_ms=20)
    app.add_inference_handler(Parity(), "/parity", name="parity")
    if broken:
        app.add_inference_handler(BrokenSetup(), "/broken", name="broken")
    return app


app = register_models(Mest(max_body_size=MAX_BODY_SIZE), broken=bool(os.environ.get("WITH_BROKEN_SETUP")))

if __name__ == "__main__":
    app.run()
