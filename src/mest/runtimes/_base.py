"""What every built-in runtime shares: a model file with declared tensors, and the predictor that serves it.

A :class:`RuntimeModel` knows one file format: how to load it, which V2 tensors it takes and returns, and how
to run it on a dict of numpy arrays. :class:`RuntimePredictor` turns any of them into a ready predictor: its
``inputs``/``outputs`` are the model's own (so V2 metadata and V2 input checks come for free), requests to its
own route are validated the same way, batches are concatenated along a dynamic first dimension and split
back, and ``setup`` loads the model in each worker and runs warmup inferences before the worker is ready.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ..api import Request
from ..errors import BadRequest, ServiceUnavailable
from ..models import BaseModel
from ..predictors import PredictorBase
from ..tensors import TensorSpec

__all__ = ["MissingExtra", "RuntimeModel", "RuntimePredictor", "Signature", "require"]

logger = logging.getLogger("mest.runtimes")

Arrays = dict[str, np.ndarray[Any, Any]]
Signature = tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]


class MissingExtra(ImportError):
    """A runtime's library is not installed; the message says which extra installs it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` with the ``pip install 'mest[extra]'`` hint.

    Raises:
        MissingExtra: The module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{what} needs {module.split('.')[0]}: pip install 'mest[{extra}]'") from exc


class RuntimeModel(BaseModel):
    """A model file one built-in runtime serves: how to load it, describe its tensors and run it.

    Subclasses implement :meth:`load`, :meth:`signature` and :meth:`run`. The loaded object is opaque to the
    predictor, so a runtime may keep a session, an estimator or a module in it.

    Args:
        path: The model file.
    """

    #: What the format is called in messages.
    format_name = "model"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    @abstractmethod
    def signature(self, loaded: Any) -> Signature:
        """The V2 inputs and outputs of a loaded model (``-1`` for any size, the batch first)."""

    @abstractmethod
    def run(self, loaded: Any, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        """Run the model on one (possibly concatenated) set of inputs; return (at least) ``outputs`` by name."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


def _dummy(spec: TensorSpec, batch: int = 1) -> np.ndarray[Any, Any]:
    """A zero tensor of a declared shape, ``-1`` dimensions taken as ``batch`` (first) or 1 (others)."""
    shape = [(batch if i == 0 else 1) if d == -1 else d for i, d in enumerate(spec.shape)]
    if spec.datatype == "BYTES":
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=spec.dtype)


def _select(outputs: tuple[TensorSpec, ...], chosen: Sequence[str] | None, model: RuntimeModel) -> tuple[
    TensorSpec, ...
]:
    if chosen is None:
        return outputs
    by_name = {spec.name: spec for spec in outputs}
    unknown = [name for name in chosen if name not in by_name]
    if unknown:
        raise ValueError(f"{model!r} has no output {unknown[0]!r}; its outputs are {sorted(by_name)}.")
    return tuple(by_name[name] for name in chosen)


class RuntimePredictor(PredictorBase):
    """A ready predictor for a :class:`RuntimeModel`: no code to write.

    The model is loaded when the predictor is made (to learn its tensors, so a bad file fails at registration)
    and again in every worker process that did not make it; ``setup`` then runs the warmup inferences, so a
    gunicorn worker reports ready only once its model has answered.

    On its own route the predictor takes a JSON object of input name to nested lists (or, for a model with one
    input, the nested list alone) and answers an object of output name to nested lists; on V2 it takes and
    returns the declared tensors.

    Args:
        model: The model file and its runtime, e.g. ``OnnxModel("iris.onnx")``.
        outputs: The outputs to compute and return, by name; ``None``: all of them.
        warmup: How many warmup inferences ``setup`` runs on inputs generated from the declared shapes
            (zeros, ``-1`` dimensions as 1); ignored when ``warmup_inputs`` is given.
        warmup_inputs: Warmup requests, each a mapping of input name to nested lists, run once each.

    Raises:
        ValueError: ``outputs`` names an output the model does not have.
    """

    def __init__(
        self,
        model: RuntimeModel,
        *,
        outputs: Sequence[str] | None = None,
        warmup: int = 1,
        warmup_inputs: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(model)
        if not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
        self.runtime = model
        self._lock = threading.Lock()
        self.model = model.load()
        self._loaded_pid: int | None = os.getpid()
        inputs, all_outputs = model.signature(self.model)
        self._inputs = inputs
        self._outputs = _select(all_outputs, outputs, model)
        self._output_names = [spec.name for spec in self._outputs]
        self._batchable = bool(inputs) and all(spec.shape and spec.shape[0] == -1 for spec in inputs)
        self._warmup = warmup
        self._warmup_inputs = [self.validate(dict(item)) for item in warmup_inputs] if warmup_inputs else None

    # The declarations are the model's, per instance (the base class's are class attributes).
    @property
    def inputs(self) -> tuple[TensorSpec, ...]:  # type: ignore[override]
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:  # type: ignore[override]
        return self._outputs

    @property
    def example(self) -> Any:
        """An input for ``mest check``: zeros of the declared shapes, as the own route takes them."""
        return {spec.name: _dummy(spec).tolist() for spec in self._inputs if spec.datatype != "BYTES"} or None

    def __repr__(self) -> str:
        return f"RuntimePredictor({self.runtime!r})"

    # -- lifecycle -------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Load the model in this process if it was loaded in another (``--preload``), then warm it up."""
        if self._loaded_pid != os.getpid() or self.model is None:
            self.load()
        else:
            self._warm(self.model)

    def load(self) -> None:
        """Load the model file again and warm it up, then swap it in (requests in flight finish on the old)."""
        loaded = self.runtime.load()
        self._warm(loaded)
        with self._lock:
            self.model = loaded
            self._loaded_pid = os.getpid()

    def release(self) -> None:
        """Drop the loaded model (its memory goes once requests still using it finish)."""
        with self._lock:
            self.model = None

    def _warm(self, loaded: Any) -> None:
        warmups = self._warmup_inputs or [{s.name: _dummy(s) for s in self._inputs} for _ in range(self._warmup)]
        for inputs in warmups:
            self.runtime.run(loaded, inputs, self._output_names)
        if warmups:
            logger.debug("%r: %d warmup inference(s) done", self.runtime, len(warmups))

    # -- requests --------------------------------------------------------------------------------------

    def validate(self, input_data: Any) -> Arrays:
        """The request's inputs as arrays of the declared datatypes and shapes.

        Raises:
            BadRequest: An input is missing, unknown, not convertible or of the wrong shape (named).
        """
        if not isinstance(input_data, Mapping):
            if len(self._inputs) != 1:
                names = ", ".join(spec.name for spec in self._inputs)
                raise BadRequest(f"Send a JSON object with the inputs {names}.")
            input_data = {self._inputs[0].name: input_data}
        unknown = sorted(set(input_data) - {spec.name for spec in self._inputs})
        if unknown:
            raise BadRequest(f"Unknown input {unknown[0]!r}; the model takes {[s.name for s in self._inputs]}.")
        arrays: Arrays = {}
        for spec in self._inputs:
            if spec.name not in input_data:
                raise BadRequest(f"Missing input {spec.name!r} ({spec.datatype} {list(spec.shape)}).")
            arrays[spec.name] = _conform(spec, input_data[spec.name])
        return arrays

    def pre_process(self, input_data: Any, req: Request) -> Arrays:
        return self.validate(input_data)

    def infer(self, processed_data: Any) -> Any:
        loaded = self.model
        if loaded is None:
            raise ServiceUnavailable(f"{self.runtime!r} is not loaded.")
        if not isinstance(processed_data, list):
            return self._run(loaded, processed_data)
        if not self._batchable or len(processed_data) == 1:
            return [self._run(loaded, item) for item in processed_data]
        first = self._inputs[0].name
        rows = [item[first].shape[0] for item in processed_data]
        try:
            joined = {s.name: np.concatenate([item[s.name] for item in processed_data]) for s in self._inputs}
        except ValueError:  # other dimensions differ between the requests: run them one by one
            return [self._run(loaded, item) for item in processed_data]
        result = self._run(loaded, joined)
        cuts = np.cumsum(rows)[:-1]
        split = {name: np.split(array, cuts) for name, array in result.items()}
        return [{name: parts[i] for name, parts in split.items()} for i in range(len(rows))]

    def _run(self, loaded: Any, inputs: Arrays) -> Arrays:
        result = self.runtime.run(loaded, inputs, self._output_names)
        return {name: result[name] for name in self._output_names}


def _conform(spec: TensorSpec, value: Any) -> np.ndarray[Any, Any]:
    try:
        if spec.datatype == "BYTES":
            array = np.asarray(value, dtype=object)
        elif isinstance(value, np.ndarray) and value.dtype == spec.dtype:
            array = value
        else:
            array = np.asarray(value, dtype=spec.dtype)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"Input {spec.name!r} is not {spec.datatype} data: {exc}") from exc
    if not spec.accepts(array.shape):
        raise BadRequest(
            f"Input {spec.name!r} has shape {list(array.shape)}, the model takes {list(spec.shape)} "
            "(-1: any size)."
        )
    return array
