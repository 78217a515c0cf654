"""Gradient-boosted trees in their native formats: XGBoost (``.json``, ``.ubj``) and LightGBM (``.txt``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tensors import TensorSpec
from ._base import Arrays, RuntimeModel, Signature, require
from ._sklearn import probe_outputs

__all__ = ["LightGBMModel", "XGBoostModel"]


class XGBoostModel(RuntimeModel):
    """An XGBoost booster saved with ``save_model`` as ``.json`` or ``.ubj`` (``pip install 'mest[xgboost]'``).

    Args:
        path: The model file.
        nthread: Threads per prediction; ``None``: XGBoost's default.

    The input is ``input``, ``FP32 [-1, num_features]``; the output ``predict`` is what
    ``Booster.inplace_predict`` returns (probabilities for a ``multi:softprob`` model).
    """

    format_name = "XGBoost"

    def __init__(self, path: str | os.PathLike[str], *, nthread: int | None = None) -> None:
        super().__init__(path)
        self.nthread = nthread

    def load(self) -> Any:
        xgb = require("xgboost", "xgboost", "The XGBoost runtime")
        booster = xgb.Booster()
        booster.load_model(self.path)
        if self.nthread is not None:
            booster.set_param({"nthread": self.nthread})
        return booster

    def signature(self, loaded: Any) -> Signature:
        spec = TensorSpec("input", "FP32", [-1, loaded.num_features()])
        probe = loaded.inplace_predict(np.zeros((1, loaded.num_features()), dtype=np.float32))
        return (spec,), (probe_outputs("predict", probe),)

    def run(self, loaded: Any, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        return {"predict": np.asarray(loaded.inplace_predict(inputs["input"]))}


class LightGBMModel(RuntimeModel):
    """A LightGBM booster saved with ``save_model`` as text (``pip install 'mest[lightgbm]'``).

    Args:
        path: The ``.txt`` model file.
        num_threads: Threads per prediction; ``None``: LightGBM's default.

    The input is ``input``, ``FP64 [-1, num_feature]``; the output ``predict`` is ``Booster.predict``'s
    (class probabilities for a multiclass model).
    """

    format_name = "LightGBM"

    def __init__(self, path: str | os.PathLike[str], *, num_threads: int | None = None) -> None:
        super().__init__(path)
        self.num_threads = num_threads

    def load(self) -> Any:
        lgb = require("lightgbm", "lightgbm", "The LightGBM runtime")
        return lgb.Booster(model_file=self.path)

    def _predict(self, loaded: Any, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        kwargs = {} if self.num_threads is None else {"num_threads": self.num_threads}
        return np.asarray(loaded.predict(x, **kwargs))

    def signature(self, loaded: Any) -> Signature:
        spec = TensorSpec("input", "FP64", [-1, loaded.num_feature()])
        probe = self._predict(loaded, np.zeros((1, loaded.num_feature())))
        return (spec,), (probe_outputs("predict", probe),)

    def run(self, loaded: Any, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        return {"predict": self._predict(loaded, inputs["input"])}
