"""The two servers bench/streaming.py compares: the same SSE stream of ``{"i", "of"}`` items from Mest (a
predictor whose ``post_process`` returns a generator) and from a bare WSGI app (the generator alone)."""

import json

import orjson

from mest import Mest
from mest.predictors import PredictorBase


def items(n):
    for i in range(n):
        yield {"i": i, "of": n}


class Count(PredictorBase):
    def infer(self, processed_data):
        return int(processed_data["n"])

    def post_process(self, n, req):
        return items(n)


mest_app = Mest(access_log=False)
mest_app.add_inference_handler(Count(), "/count")


def bare_app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    n = int(json.loads(environ["wsgi.input"].read(length))["n"])
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    return (b"data: " + orjson.dumps(item) + b"\n\n" for item in items(n))
