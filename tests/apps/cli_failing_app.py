"""An app that fails ``mest check`` in the way ``CLI_FAILURE`` names, beside a model that passes.

CLI_FAILURE: ``example`` (an example the predictor rejects), ``setup`` (a setup that raises), ``import`` (the
module raises while imported), anything else: nothing fails.
"""

import os

from mest import Mest
from mest.predictors import PredictorBase

FAILURE = os.environ.get("CLI_FAILURE", "")
if FAILURE == "import":
    raise RuntimeError("the app module failed on purpose")


class Fine(PredictorBase):
    example = {"features": [1, 2]}

    def pre_process(self, input_data, req):
        return input_data["features"]

    def infer(self, processed_data):
        return sum(processed_data)


class WrongExample(Fine):
    example = {"feature": [1, 2]}  # pre_process wants "features": answers 400


class BrokenSetup(Fine):
    def setup(self):
        raise FileNotFoundError("weights.bin is missing")


app = Mest()
app.add_inference_handler(Fine(), "/fine")
if FAILURE == "example":
    app.add_inference_handler(WrongExample(), "/wrong-example")
if FAILURE == "setup":
    app.add_inference_handler(BrokenSetup(), "/broken-setup")
