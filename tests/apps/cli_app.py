"""An app for the ``mest`` command's tests: a versioned, batched model and a raw-bytes one, both with examples.

It ends with an unguarded ``app.run()``, as the seed README's example does: ``mest serve``, ``mest routes`` and
``mest check`` must import it without starting the development server.
"""

import os

from mest import Mest
from mest.predictors import PredictorBase


class Doubler(PredictorBase):
    """Batched: ``infer`` receives a list of inputs."""

    example = {"x": [1, 2]}

    def pre_process(self, input_data, req):
        return input_data["x"]

    def infer(self, batch):
        return [[2 * v for v in item] for item in batch]

    def post_process(self, prediction, req):
        return {"doubled": prediction, "pid": os.getpid()}


class Shout(PredictorBase):
    """Takes ``text/plain``: ``pre_process`` gets bytes."""

    content_types = ("text/plain",)
    example = b"hello"

    def infer(self, processed_data):
        return processed_data.decode().upper()


app = Mest()
app.add_inference_handler(
    Doubler(), "/double", name="doubler", version="2", max_batch_size=8, max_batch_delay_ms=2.5, max_queue=64,
    timeout_s=5,
)
app.add_inference_handler(Shout(), "/shout")
app.run()
