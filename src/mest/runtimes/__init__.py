"""Built-in runtimes: serve a model file with no predictor code.

Each runtime is a :class:`RuntimeModel` (load a format, describe its V2 tensors, run it); a
:class:`RuntimePredictor` serves any of them. One line from Python::

    app.add_inference_handler(runtimes.predictor_for("models/iris.onnx"), "/iris")

The runtime is chosen by the file's suffix (:data:`SUFFIXES`); the heavy libraries are extras
(``mest[onnx]``, ``mest[sklearn]``, ``mest[xgboost]``, ``mest[lightgbm]``, ``torch``), and a missing one is a
:class:`MissingExtra` error with the ``pip install`` line. See docs/runtimes.md.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._base import MissingExtra, RuntimeModel, RuntimePredictor, Signature
from ._boosters import LightGBMModel, XGBoostModel
from ._onnx import OnnxModel, onnx_datatype
from ._sklearn import PICKLE_SUFFIXES, PickleNotAllowed, SklearnModel, refuse_pickle
from ._torch import TorchModel

__all__ = [
    "PICKLE_SUFFIXES",
    "SUFFIXES",
    "LightGBMModel",
    "MissingExtra",
    "OnnxModel",
    "PickleNotAllowed",
    "RuntimeModel",
    "RuntimePredictor",
    "Signature",
    "SklearnModel",
    "TorchModel",
    "XGBoostModel",
    "model_for",
    "onnx_datatype",
    "option_names",
    "predictor_for",
    "refuse_pickle",
]

#: The runtime serving each model-file suffix.
SUFFIXES: Mapping[str, type[RuntimeModel]] = {
    ".onnx": OnnxModel,
    ".skops": SklearnModel,
    ".joblib": SklearnModel,
    ".pkl": SklearnModel,
    ".pickle": SklearnModel,
    ".json": XGBoostModel,
    ".ubj": XGBoostModel,
    ".txt": LightGBMModel,
    ".pt": TorchModel,
    ".pt2": TorchModel,
}


def _runtime(path: str | os.PathLike[str]) -> type[RuntimeModel]:
    suffix = Path(path).suffix.lower()
    runtime = SUFFIXES.get(suffix)
    if runtime is None:
        raise ValueError(f"{os.fspath(path)}: no built-in runtime serves {suffix or 'files without a suffix'!r} "
                         f"files; known: {', '.join(SUFFIXES)}.")
    return runtime


def option_names(path: str | os.PathLike[str]) -> list[str]:
    """The options the runtime of ``path`` takes (its constructor's keyword arguments).

    Raises:
        ValueError: No runtime serves the file's suffix.
    """
    init: Callable[..., Any] = _runtime(path).__init__
    return [p.name for p in inspect.signature(init).parameters.values() if p.kind is p.KEYWORD_ONLY]


def model_for(path: str | os.PathLike[str], **options: Any) -> RuntimeModel:
    """The :class:`RuntimeModel` for a file, chosen by its suffix, with the runtime's ``options``.

    Raises:
        ValueError: No runtime serves the suffix, or an option is unknown or invalid.
        PickleNotAllowed: The file is a pickle and ``allow_pickle`` is not set (the file is not opened).
    """
    runtime = _runtime(path)
    unknown = sorted(set(options) - set(option_names(path)))
    if unknown:
        raise ValueError(f"The {runtime.format_name} runtime has no option {unknown[0]!r}; "
                         f"it takes {', '.join(option_names(path)) or 'none'}.")
    return runtime(path, **options)


def predictor_for(
    path: str | os.PathLike[str],
    *,
    outputs: Sequence[str] | None = None,
    warmup: int = 1,
    warmup_inputs: Sequence[Mapping[str, Any]] | None = None,
    **options: Any,
) -> RuntimePredictor:
    """A ready predictor for a model file: ``app.add_inference_handler(predictor_for("iris.onnx"), "/iris")``.

    Args:
        path: The model file; its suffix chooses the runtime (:data:`SUFFIXES`).
        outputs: See :class:`RuntimePredictor`.
        warmup: See :class:`RuntimePredictor`.
        warmup_inputs: See :class:`RuntimePredictor`.
        **options: The runtime's options (e.g. ``intra_op_threads`` for ONNX, ``method`` for scikit-learn).

    Raises:
        ValueError: Unknown suffix or option, or a model file the runtime cannot serve.
        PickleNotAllowed: A pickle without ``allow_pickle=True`` (never opened).
        MissingExtra: The runtime's library is not installed.
    """
    return RuntimePredictor(
        model_for(path, **options), outputs=outputs, warmup=warmup, warmup_inputs=warmup_inputs
    )
