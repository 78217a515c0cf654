"""PyTorch: TorchScript (``.pt``) and ``torch.export`` programs (``.pt2``), in eval and inference mode."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..tensors import TensorSpec, datatype_of
from ._base import Arrays, RuntimeModel, Signature, _dummy, require

__all__ = ["TorchModel"]

_WHAT = "The PyTorch runtime"


def _torch() -> Any:
    return require("torch", "torch", _WHAT)


def _datatype(torch_dtype: Any) -> str:
    torch = _torch()
    datatype = datatype_of(torch.empty(0, dtype=torch_dtype).numpy().dtype)
    if datatype is None or datatype == "BYTES":
        raise ValueError(f"torch dtype {torch_dtype} has no V2 datatype")
    return datatype


class TorchModel(RuntimeModel):
    """A TorchScript module (``torch.jit.save``, ``.pt``) or an exported program (``torch.export.save``,
    ``.pt2``) (``pip install torch`` and ``mest[torch]``).

    Args:
        path: The ``.pt`` or ``.pt2`` file.
        inputs: The inputs, in the order the module takes them. Required for TorchScript, which records no
            input shapes; an exported program's are read from it (dynamic dimensions as ``-1``).
        device: ``"cpu"``, ``"cuda"`` (``"cuda:1"``...) or ``"auto"`` (default: CUDA when available).

    Outputs are ``output0``, ``output1``... (a module returning one tensor has ``output0``), described by a
    probe inference on zeros when the model is loaded.
    """

    format_name = "PyTorch"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        inputs: Sequence[TensorSpec] | None = None,
        device: str = "auto",
    ) -> None:
        super().__init__(path)
        self.exported = Path(self.path).suffix.lower() == ".pt2"
        if not self.exported and not inputs:
            raise ValueError(
                f"{self.path}: a TorchScript file records no input shapes; declare them, e.g. "
                "inputs=[TensorSpec('input', 'FP32', [-1, 4])] (or \"inputs\" in the model's settings)."
            )
        self.declared_inputs = tuple(inputs) if inputs else None
        self.device = device

    def _device(self) -> Any:
        torch = _torch()
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def load(self) -> Any:
        torch = _torch()
        device = self._device()
        if self.exported:
            program = torch.export.load(self.path)
            module = program.module().to(device)
            inputs = self.declared_inputs or _exported_inputs(program)
        else:
            with warnings.catch_warnings():  # recent torch deprecates TorchScript; its files still load and run
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(self.path, map_location=device)
            inputs = self.declared_inputs or ()
        if hasattr(module, "eval") and not self.exported:  # exported modules refuse eval(); they are traced so
            module.eval()
        outputs = _probe(module, inputs, device)
        return _Loaded(module, device, tuple(inputs), outputs)

    def signature(self, loaded: Any) -> Signature:
        return loaded.inputs, loaded.outputs

    def run(self, loaded: Any, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        return _call(loaded.module, [inputs[spec.name] for spec in loaded.inputs], loaded.device)


class _Loaded:
    __slots__ = ("device", "inputs", "module", "outputs")

    def __init__(self, module: Any, device: Any, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]):
        self.module = module
        self.device = device
        self.inputs = inputs
        self.outputs = outputs


def _call(module: Any, arrays: list[np.ndarray[Any, Any]], device: Any) -> Arrays:
    torch = _torch()
    with torch.inference_mode():
        result = module(*[torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays])
    values = list(result) if isinstance(result, (tuple, list)) else [result]
    return {f"output{i}": value.detach().cpu().numpy() for i, value in enumerate(values)}


def _probe(module: Any, inputs: Sequence[TensorSpec], device: Any) -> tuple[TensorSpec, ...]:
    result = _call(module, [_dummy(spec) for spec in inputs], device)
    specs = []
    for name, array in result.items():
        datatype = datatype_of(array.dtype)
        if datatype is None:
            raise ValueError(f"Output {name!r} has dtype {array.dtype}, which no V2 datatype carries.")
        batched = bool(inputs) and inputs[0].shape[:1] == (-1,) and array.ndim > 0
        specs.append(TensorSpec(name, datatype, [-1, *array.shape[1:]] if batched else list(array.shape)))
    return tuple(specs)


def _exported_inputs(program: Any) -> tuple[TensorSpec, ...]:
    """The user inputs of an exported program, from its placeholders' fake tensors (symbolic dims → -1)."""
    user_inputs = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta.get("val")
        shape = [d if isinstance(d, int) else -1 for d in value.shape]
        specs.append(TensorSpec(node.name, _datatype(value.dtype), shape))
    return tuple(specs)
