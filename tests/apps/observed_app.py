"""An app for the observability tests under real servers: metrics, access logs, schemas, OpenAPI.

Settings come from ``MEST_*`` environment variables (``MEST_LOG_FORMAT=json``, ``MEST_LOG_BODIES=1``), so the
tests run it exactly as a user would: ``gunicorn observed_app:app``, no config file.
"""

import os

from pydantic import BaseModel, Field

from mest import Mest
from mest.predictors import PredictorBase


class Echo(PredictorBase):
    """Answers with the worker's pid, so tests can see which worker served a request."""

    def infer(self, processed_data):
        return processed_data

    def post_process(self, prediction, req):
        return {"echo": prediction, "pid": os.getpid()}


class Boom(PredictorBase):
    def infer(self, processed_data):
        raise RuntimeError("the model exploded with a secret in its traceback")


class SumRequest(BaseModel):
    features: list[float] = Field(min_length=1, max_length=16)


class SumResponse(BaseModel):
    total: float


class Summer(PredictorBase):
    """Sums the features (batched: ``infer`` gets a list of feature lists)."""

    request_schema = SumRequest
    response_schema = SumResponse
    example = {"features": [1.5, 2.5]}

    def pre_process(self, input_data, req):
        return input_data.features

    def infer(self, processed_data):
        return [sum(features) for features in processed_data]

    def post_process(self, prediction, req):
        return {"total": prediction}


app = Mest()
app.add_inference_handler(Echo(), "/echo")
app.add_inference_handler(Boom(), "/boom")
app.add_inference_handler(Summer(), "/sum", max_batch_size=4)

if __name__ == "__main__":
    app.run()
