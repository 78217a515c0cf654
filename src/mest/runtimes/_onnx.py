"""ONNX Runtime: ``.onnx`` files, with the V2 signature read from the graph."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tensors import TensorSpec
from ._base import Arrays, RuntimeModel, Signature, require

__all__ = ["OnnxModel", "onnx_datatype"]

# Triton's ONNX-to-V2 table (onnxruntime's type strings); types with no V2 datatype are left out.
_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def onnx_datatype(onnx_type: str) -> str | None:
    """The V2 datatype of an onnxruntime type string (``"tensor(float)"`` → ``"FP32"``), if there is one."""
    return _DATATYPES.get(onnx_type)


def _spec(arg: Any) -> TensorSpec | None:
    datatype = onnx_datatype(arg.type)
    if datatype is None:
        return None
    # Symbolic ("batch") and unknown (None) dimensions are any size.
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
    return TensorSpec(arg.name, datatype, dims)


class OnnxModel(RuntimeModel):
    """An ONNX model served by ONNX Runtime (``pip install 'mest[onnx]'``).

    Args:
        path: The ``.onnx`` file.
        intra_op_threads: Threads inside one operator; ``None``: onnxruntime's default (every core). Under
            several gunicorn workers, ``cores / workers`` avoids oversubscription.
        inter_op_threads: Threads running operators in parallel; ``None``: onnxruntime's default.
        providers: Execution providers in order of preference, e.g. ``["CUDAExecutionProvider",
            "CPUExecutionProvider"]``; ``None``: CUDA when onnxruntime has it, else CPU.

    Graph inputs and outputs that are not tensors of a V2 datatype (sequences, maps, such as a ZipMap) are not
    served: a graph input of that kind is an error, such an output is left out.
    """

    format_name = "ONNX"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__(path)
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.providers = list(providers) if providers is not None else None

    def load(self) -> Any:
        ort = require("onnxruntime", "onnx", "The ONNX runtime")
        options = ort.SessionOptions()
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            options.inter_op_num_threads = self.inter_op_threads
        available = ort.get_available_providers()
        providers = self.providers or [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
        ]
        return ort.InferenceSession(self.path, sess_options=options, providers=providers)

    def signature(self, loaded: Any) -> Signature:
        inputs = []
        for arg in loaded.get_inputs():
            spec = _spec(arg)
            if spec is None:
                raise ValueError(f"{self.path}: input {arg.name!r} is a {arg.type}, which no V2 datatype carries.")
            inputs.append(spec)
        outputs = [spec for arg in loaded.get_outputs() if (spec := _spec(arg)) is not None]
        return tuple(inputs), tuple(outputs)

    def run(self, loaded: Any, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        feed = {name: _feed(array) for name, array in inputs.items()}
        return dict(zip(outputs, loaded.run(list(outputs), feed), strict=True))


def _feed(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # V2 BYTES arrive as bytes objects; onnxruntime's string tensors take str.
    if array.dtype == object:
        decoded: np.ndarray[Any, Any] = np.vectorize(
            lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object]
        )(array)
        return decoded
    return array
