"""Tensor declarations, and the Open Inference Protocol (V2) datatypes in numpy terms.

A predictor may declare the tensors it takes and returns (``inputs`` / ``outputs``, sequences of
:class:`TensorSpec`); the V2 endpoints report them as model metadata and check requests against them. This
module imports nothing of mest, so predictors, codecs and protocols can all depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "BF16_HINT",
    "DATATYPES",
    "MAX_DIMS",
    "TensorSpec",
    "bfloat16",
    "datatype_of",
    "dtype_of",
    "element_count",
    "shape_matches",
]

#: Every V2 datatype and the numpy dtype of its elements. Fixed-size types are little-endian, as the binary
#: tensor data extension lays them out; BYTES elements are Python ``bytes`` held in an ``object`` array.
DATATYPES: Mapping[str, np.dtype[Any]] = MappingProxyType(
    {
        "BOOL": np.dtype(np.bool_),
        "UINT8": np.dtype("<u1"),
        "UINT16": np.dtype("<u2"),
        "UINT32": np.dtype("<u4"),
        "UINT64": np.dtype("<u8"),
        "INT8": np.dtype("<i1"),
        "INT16": np.dtype("<i2"),
        "INT32": np.dtype("<i4"),
        "INT64": np.dtype("<i8"),
        "FP16": np.dtype("<f2"),
        "FP32": np.dtype("<f4"),
        "FP64": np.dtype("<f8"),
        "BYTES": np.dtype(np.object_),
    }
)

#: Most dimensions a tensor may have (numpy's own limit is 64).
MAX_DIMS = 32

#: What to install for BF16 tensors (numpy has no bfloat16; ml_dtypes, which JAX and TensorFlow use, adds it).
BF16_HINT = "BF16 tensors need ml_dtypes: pip install 'mest[bf16]'"


def bfloat16() -> np.dtype[Any] | None:
    """ml_dtypes' ``bfloat16`` dtype, imported on first use (it takes a third of a second); ``None`` without it."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    dtype: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
    return dtype


def dtype_of(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype's elements, BF16 included.

    Raises:
        KeyError: Not a V2 datatype.
        ImportError: ``BF16`` without ml_dtypes installed (the message says what to install).
    """
    if datatype == "BF16":
        dtype = bfloat16()
        if dtype is None:
            raise ImportError(BF16_HINT)
        return dtype
    return DATATYPES[datatype]

_BY_KIND_AND_SIZE = {
    (dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items() if name not in ("BOOL", "BYTES")
}


def datatype_of(dtype: np.dtype[Any]) -> str | None:
    """The V2 datatype that carries elements of a numpy dtype, or ``None`` if there is none.

    Strings (``str``, ``bytes``) and ``object`` arrays map to ``BYTES``; complex, datetime, ``longdouble`` and
    structured dtypes have no V2 datatype.
    """
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "OSU":
        return "BYTES"
    if kind == "V" and dtype.name == "bfloat16":  # ml_dtypes' (told by name: no import needed)
        return "BF16"
    return _BY_KIND_AND_SIZE.get((kind, dtype.itemsize))


def element_count(shape: Iterable[int]) -> int:
    """The number of elements of a tensor of this (concrete) shape, computed without overflow."""
    return math.prod(shape)


def shape_matches(declared: Sequence[int], shape: Sequence[int]) -> bool:
    """Whether a concrete shape fits a declared one, where ``-1`` stands for any size."""
    return len(declared) == len(shape) and all(d in (-1, s) for d, s in zip(declared, shape, strict=True))


@dataclass(frozen=True, init=False)
class TensorSpec:
    """A tensor a predictor takes or returns, as V2 model metadata describes it.

    Args:
        name: The tensor's name: the key of ``input_data`` for an input, the key of the dict ``post_process``
            returns for an output.
        datatype: A V2 datatype: ``BOOL``, ``UINT8`` … ``UINT64``, ``INT8`` … ``INT64``, ``FP16``, ``FP32``,
            ``FP64``, ``BF16`` (with ml_dtypes installed) or ``BYTES`` (case-sensitive, as the protocol says).
        shape: The dimensions, ``-1`` for a dimension of any size (typically the batch), e.g. ``[-1, 4]``.

    Raises:
        ValueError: Empty name, unknown datatype, or a dimension that is not an integer ``>= -1``.

    Example:
        >>> class Iris(PredictorBase):                                  # doctest: +SKIP
        ...     inputs = [TensorSpec("features", "FP32", [-1, 4])]
        ...     outputs = [TensorSpec("probability", "FP64", [3])]
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __init__(self, name: str, datatype: str, shape: Sequence[int]) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"TensorSpec name must be a non-empty string, got {name!r}")
        if datatype not in DATATYPES and datatype != "BF16":
            raise ValueError(
                f"TensorSpec {name!r}: unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}, BF16"
            )
        if datatype == "BF16" and bfloat16() is None:
            raise ValueError(f"TensorSpec {name!r}: {BF16_HINT}")
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
            raise ValueError(f"TensorSpec {name!r}: shape must be a list of integers, got {shape!r}")
        dims = tuple(shape)
        if len(dims) > MAX_DIMS or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in dims
        ):
            raise ValueError(
                f"TensorSpec {name!r}: shape must be at most {MAX_DIMS} integers >= 0, or -1 for any size; "
                f"got {list(dims)!r}"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "datatype", datatype)
        object.__setattr__(self, "shape", dims)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of this tensor's elements."""
        return dtype_of(self.datatype)

    def accepts(self, shape: Sequence[int]) -> bool:
        """Whether a concrete shape fits this declaration."""
        return shape_matches(self.shape, shape)

    def to_dict(self) -> dict[str, Any]:
        """The V2 ``$metadata_tensor`` object."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
