"""A small app exercising every behaviour of the core, served by the e2e tests (gunicorn and dev server)."""

import os
import time

import numpy as np

from mest import Mest
from mest.api import Response
from mest.errors import BadRequest
from mest.predictors import PredictorBase


class EchoSum(PredictorBase):
    """Sums the features; echoes an ``id`` so concurrent tests can check nobody got another's answer."""

    def pre_process(self, input_data, req):
        return {"id": input_data.get("id"), "x": np.asarray(input_data["features"], dtype=float)}

    def infer(self, processed_data):
        if processed_data["x"].size and processed_data["x"].flat[0] == 666:
            raise RuntimeError("the model exploded on purpose")
        if processed_data["x"].size and processed_data["x"].flat[0] == -1:
            time.sleep(0.2)
        return {"id": processed_data["id"], "sum": processed_data["x"].sum(axis=-1)}

    def post_process(self, prediction, req):
        if prediction["id"] == "custom":
            return Response("plain text", status=201, headers={"Content-Type": "text/plain", "X-Custom": "1"})
        if prediction["id"] == "reject":
            raise BadRequest("rejected by post_process")
        return {"id": prediction["id"], "sum": prediction["sum"], "pid": os.getpid()}


class BrokenSetup(PredictorBase):
    def setup(self):
        raise FileNotFoundError("/secret/path/model.bin")

    def infer(self, processed_data):
        return processed_data


app = Mest(max_body_size=int(os.environ.get("MAX_BODY_SIZE", 1024 * 1024)))
app.add_inference_handler(EchoSum(), "/sum")
if os.environ.get("WITH_BROKEN_SETUP"):
    app.add_inference_handler(BrokenSetup(), "/broken")

if __name__ == "__main__":
    app.run()
