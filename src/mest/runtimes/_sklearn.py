"""scikit-learn: skops files by default; joblib/pickle files only when the user allows pickles for the model."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..tensors import TensorSpec, datatype_of
from ._base import Arrays, RuntimeModel, Signature, require

__all__ = ["PICKLE_SUFFIXES", "PickleNotAllowed", "SklearnModel", "probe_outputs"]

logger = logging.getLogger("mest.runtimes")

#: File suffixes that are pickles (loading one runs whatever code its author put in it).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_METHODS = ("predict", "predict_proba")


class PickleNotAllowed(ValueError):
    """A pickle file was found for a model that does not allow pickles; it was not loaded."""


def refuse_pickle(path: str, how_to_allow: str) -> None:
    """Raise :class:`PickleNotAllowed` for ``path`` if it is a pickle (by suffix), without opening it.

    Raises:
        PickleNotAllowed: The file is a pickle.
    """
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        raise PickleNotAllowed(
            f"{path} is a pickle: loading it runs any code its author put in it, so it was not loaded. "
            f"Save the model with skops (skops.io.dump) or convert it to ONNX; if you trust the file, "
            f"{how_to_allow}."
        )


def probe_outputs(name: str, result: Any) -> TensorSpec:
    """The declared output for what a model returned on a one-row probe: batch first, other dims as seen."""
    array = np.asarray(result)
    datatype = datatype_of(array.dtype)
    if datatype is None:
        raise ValueError(f"Output {name!r} has dtype {array.dtype}, which no V2 datatype carries.")
    return TensorSpec(name, datatype, [-1, *array.shape[1:]])


class SklearnModel(RuntimeModel):
    """A scikit-learn estimator or pipeline (``pip install 'mest[sklearn]'``).

    Args:
        path: A ``.skops`` file (the default, safe format), or a ``.joblib``/``.pkl`` pickle when
            ``allow_pickle`` is set.
        method: ``"predict"`` (default) or ``"predict_proba"`` (checked on a Pipeline's last step); the
            output is named after it.
        trusted: Types (``"module.Class"``) the skops file may contain beyond skops' defaults; a file with any
            other type is refused with the list of them (``skops.io.get_untrusted_types``).
        allow_pickle: Load a joblib/pickle file. Loading a pickle runs code: allow it only for files you
            trust; a warning is logged each time one loads.

    The input is ``input``, ``FP64 [-1, n_features_in_]``.

    Raises:
        PickleNotAllowed: The file is a pickle and ``allow_pickle`` is not set (nothing is loaded).
        ValueError: ``method`` is not one the estimator has.
    """

    format_name = "scikit-learn"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        method: str = "predict",
        trusted: Sequence[str] = (),
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(path)
        if method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
        self.method = method
        self.trusted = list(trusted)
        self.allow_pickle = allow_pickle
        self.is_pickle = Path(self.path).suffix.lower() in PICKLE_SUFFIXES
        if not allow_pickle:
            refuse_pickle(self.path, "pass allow_pickle=True (or allow_pickle: true in the model's settings)")

    def load(self) -> Any:
        if self.is_pickle:
            if not self.allow_pickle:  # checked again: the attribute may have changed since __init__
                refuse_pickle(self.path, "pass allow_pickle=True")
            joblib = require("joblib", "sklearn", "Loading a joblib file")
            logger.warning("loading the pickle %s: it can run code; allow_pickle is set for it", self.path)
            estimator = joblib.load(self.path)
        else:
            sio = require("skops.io", "sklearn", "The scikit-learn runtime")
            untrusted = [t for t in sio.get_untrusted_types(file=self.path) if t not in self.trusted]
            if untrusted:
                raise ValueError(
                    f"{self.path} contains types skops does not trust by default: {', '.join(untrusted)}. "
                    "If you trust them, list them in `trusted`."
                )
            estimator = sio.load(self.path, trusted=self.trusted or None)
        last = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        if not callable(getattr(last, self.method, None)):
            raise ValueError(f"{self.path}: {type(last).__name__} has no {self.method}() method.")
        return estimator

    def signature(self, loaded: Any) -> Signature:
        features = getattr(loaded, "n_features_in_", None)
        if not isinstance(features, int):
            raise ValueError(f"{self.path}: the estimator is not fitted (it has no n_features_in_).")
        spec = TensorSpec("input", "FP64", [-1, features])
        probe = getattr(loaded, self.method)(np.zeros((1, features)))
        return (spec,), (probe_outputs(self.method, probe),)

    def run(self, loaded: Any, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        result = np.asarray(getattr(loaded, self.method)(inputs["input"]))
        if result.dtype.kind == "U":  # string class labels: V2 BYTES
            result = result.astype(object)
        return {self.method: result}
