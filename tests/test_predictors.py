"""mest.predictors: the user's contract and the default lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import pytest

from mest import BasePredictor, PredictorBase
from mest.api import Request
from mest.models import BaseModel, JoblibModel


class CountingModel(BaseModel):
    def __init__(self) -> None:
        self.loads = 0

    def load(self) -> Any:
        self.loads += 1
        return {"weights": self.loads}


class Echo(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        return processed_data


def test_base_predictor_is_an_alias() -> None:
    assert BasePredictor is PredictorBase


def test_default_content_types_are_json() -> None:
    assert PredictorBase.content_types == ("application/json",)


def test_default_pre_and_post_process_pass_through() -> None:
    predictor = Echo()
    req = Request("POST", "/")
    data = {"features": [1, 2]}
    assert predictor.pre_process(data, req) is data
    assert predictor.post_process(data, req) is data


def test_infer_must_be_implemented() -> None:
    class NoInfer(PredictorBase):
        pass

    with pytest.raises(NotImplementedError, match=r"NoInfer\.infer"):
        NoInfer().infer([1])


def test_setup_loads_artifacts_into_model() -> None:
    artifacts = CountingModel()
    predictor = Echo(artifacts)
    assert predictor.artifacts is artifacts
    assert predictor.model is None  # nothing is loaded at construction (it may run in gunicorn's master)
    assert artifacts.loads == 0
    predictor.setup()
    assert predictor.model == {"weights": 1}
    predictor.setup()
    assert artifacts.loads == 1  # a loaded model is not loaded again


def test_setup_loads_a_joblib_model(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    joblib.dump({"coef": [1.0, 2.0]}, path)
    predictor = Echo(JoblibModel(path))
    predictor.setup()
    assert predictor.model == {"coef": [1.0, 2.0]}


def test_setup_without_artifacts_does_nothing() -> None:
    predictor = Echo()
    predictor.setup()
    assert predictor.model is None


def test_seed_style_init_without_super() -> None:
    class Seed(PredictorBase):
        def __init__(self) -> None:  # the seed README's shape: no super().__init__()
            self.model = "loaded in __init__"

        def infer(self, processed_data: Any) -> Any:
            return self.model

    predictor = Seed()
    predictor.setup()
    assert predictor.model == "loaded in __init__"
    assert predictor.infer(None) == "loaded in __init__"
