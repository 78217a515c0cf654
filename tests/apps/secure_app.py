"""An app configured only from the environment (``MEST_API_KEYS``, ``MEST_CORS_ORIGINS``, ...) for the security
tests on real servers; it counts the requests its model sees, so path tricks can be shown not to reach it."""

import os

from mest import Mest
from mest.predictors import PredictorBase


class Counter(PredictorBase):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def infer(self, processed_data):
        self.calls += 1
        return {"calls": self.calls, "pid": os.getpid(), "input": processed_data}


app = Mest()
app.add_inference_handler(Counter(), "/api/v1/predict", name="model-a")

if __name__ == "__main__":
    app.run()
