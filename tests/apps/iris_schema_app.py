"""The iris example with its request and response declared (pydantic), as docs/schemas-openapi.md shows it.

Serve from a folder holding ``models/logistic_regression.pkl`` (examples/iris/train.py writes it), with this
folder on the Python path: ``gunicorn --pythonpath tests/apps iris_schema_app:app``.
"""

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mest import Mest
from mest.models import JoblibModel
from mest.predictors import PredictorBase
from mest.tensors import TensorSpec

Measurement = Annotated[float, Field(ge=0, le=100, description="centimetres")]


class IrisRequest(BaseModel):
    """Sepal length, sepal width, petal length and petal width of each flower."""

    # Strict: what the published JSON Schema rejects (``true`` for a number), Mest rejects too.
    model_config = ConfigDict(strict=True)

    features: list[Annotated[list[Measurement], Field(min_length=4, max_length=4)]] = Field(
        min_length=1, max_length=64
    )


class IrisResponse(BaseModel):
    """The class probabilities of the first flower (setosa, versicolor, virginica)."""

    probability: list[float] = Field(min_length=3, max_length=3)


class IrisPredictor(PredictorBase):
    """Classifies iris flowers with the example's logistic regression."""

    request_schema = IrisRequest
    response_schema = IrisResponse
    inputs = [TensorSpec("features", "FP64", [-1, 4])]
    outputs = [TensorSpec("probability", "FP64", [3])]
    example = {"features": [[5.1, 3.5, 1.4, 0.2]]}

    def __init__(self) -> None:
        super().__init__(JoblibModel("models/logistic_regression.pkl"))

    def pre_process(self, input_data, req):
        if isinstance(input_data, IrisRequest):  # the predictor's own route
            return np.asarray(input_data.features, dtype=float)
        return np.asarray(input_data["features"], dtype=float)  # Open Inference Protocol: {name: array}

    def infer(self, processed_data):
        return self.model.predict_proba(processed_data)[0]

    def post_process(self, prediction, req):
        return {"probability": prediction}


app = Mest(title="Iris")
app.add_inference_handler(IrisPredictor(), "/api/v1/predict", name="iris")

if __name__ == "__main__":
    app.run()
