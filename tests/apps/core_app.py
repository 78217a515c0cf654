"""The app the core's end-to-end tests serve (dev server and gunicorn): one route per behaviour under test.

Routes:
    POST /sum        JSON ``{"id": ..., "features": [...]}`` -> ``{"id", "sum", "pid"}``; special inputs trigger
                     each error path (see :class:`Sum`).
    POST /text       ``content_types = ("text/plain",)``: receives raw bytes.
    POST /lifecycle  answers how many times ``setup`` ran in the answering process.
    POST /broken     only with ``WITH_BROKEN_SETUP=1``: its ``setup`` raises.

``MAX_BODY_SIZE`` (bytes) sets the app's body limit; default 64 KiB.
"""

import os

import numpy as np

from mest import Mest
from mest.api import Response
from mest.errors import BadRequest, UnprocessableEntity
from mest.predictors import PredictorBase

SECRET = "/secret/weights/model.bin"  # appears in internal errors; must never reach a client


class Sum(PredictorBase):
    """Sums ``features`` and echoes ``id``, so concurrent tests can check nobody got another's answer.

    ``id`` values: ``"custom"`` -> 201 text Response with ``X-Custom``; ``"bytes"`` -> raw bytes Response;
    ``"reject"`` -> BadRequest from post_process; ``"unprocessable"`` -> 422 from pre_process;
    ``"post-crash"`` -> ZeroDivisionError in post_process. ``features[0] == 666`` -> RuntimeError in infer.
    Missing ``features`` -> KeyError, non-numeric ones -> ValueError, ``features: 5`` -> TypeError (``len``).
    """

    def pre_process(self, input_data, req):
        if input_data.get("id") == "unprocessable":
            raise UnprocessableEntity("features must be finite")
        features = input_data["features"]
        len(features)  # TypeError for a scalar
        return {"id": input_data.get("id"), "x": np.asarray(features, dtype=float)}

    def infer(self, processed_data):
        x = processed_data["x"]
        if x.size and x.flat[0] == 666:
            raise RuntimeError(f"the model exploded reading {SECRET}")
        return {"id": processed_data["id"], "sum": x.sum()}

    def post_process(self, prediction, req):
        kind = prediction["id"]
        if kind == "custom":
            return Response("plain text", status=201, headers={"Content-Type": "text/plain", "X-Custom": "1"})
        if kind == "bytes":
            return Response(b"\x00\x01raw", headers={"Content-Type": "application/x-raw"})
        if kind == "reject":
            raise BadRequest("rejected by post_process")
        if kind == "post-crash":
            return 1 / 0
        return {"id": kind, "sum": prediction["sum"], "pid": os.getpid()}


class Text(PredictorBase):
    """Accepts ``text/plain`` only: ``pre_process`` gets the raw bytes."""

    content_types = ("text/plain",)

    def infer(self, processed_data):
        return {"type": type(processed_data).__name__, "upper": processed_data.decode("utf-8").upper()}


class Lifecycle(PredictorBase):
    """Counts its ``setup`` calls in this process."""

    def __init__(self):
        super().__init__()
        self.setup_calls = 0

    def setup(self):
        self.setup_calls += 1

    def infer(self, processed_data):
        return {"setup_calls": self.setup_calls, "pid": os.getpid()}


class BrokenSetup(PredictorBase):
    def setup(self):
        raise FileNotFoundError(SECRET)

    def infer(self, processed_data):
        return processed_data


app = Mest(max_body_size=int(os.environ.get("MAX_BODY_SIZE", 64 * 1024)))
app.add_inference_handler(Sum(), "/sum")
app.add_inference_handler(Text(), "/text")
app.add_inference_handler(Lifecycle(), "/lifecycle")
if os.environ.get("WITH_BROKEN_SETUP"):
    app.add_inference_handler(BrokenSetup(), "/broken")

if __name__ == "__main__":
    app.run()
