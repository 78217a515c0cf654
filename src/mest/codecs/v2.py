"""Open Inference Protocol (V2) bodies ⇄ numpy: JSON tensors and the binary tensor data extension.

Pure: bytes in, arrays out, and back; no HTTP. A problem with a request is a :class:`~mest.errors.BadRequest`
whose message names the input; a problem with what a predictor returned is an
:class:`~mest.errors.InferenceError` naming the output.

Binary tensor data extension: the body is the JSON header followed by the raw bytes of every binary tensor,
in the order the header lists them. The header's length travels in the ``Inference-Header-Content-Length``
HTTP header (passed here as ``header_length``), each binary tensor's byte count in its
``parameters.binary_data_size``. Elements are little-endian and row-major; a BOOL is one byte, 0 or 1; a
BYTES element is a 4-byte little-endian length followed by that many bytes.

Nothing is allocated from a size the client merely declares: element counts are computed with Python integers
and compared with the data actually received before any array is built, so a request claiming a shape of
``[10**12]`` costs nothing but a 400.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..errors import BadRequest, InferenceError
from ..tensors import BF16_HINT, DATATYPES, MAX_DIMS, TensorSpec, datatype_of, dtype_of, element_count
from . import json
from ._json_numbers import NumberLists, loads_numbers

__all__ = [
    "InferenceRequest",
    "RequestedOutput",
    "decode_request",
    "encode_response",
    "outputs_from_result",
]

_U32 = struct.Struct("<I")
_MAX_DIM = 2**63 - 1  # each dimension must fit an int64, as the gRPC form of the protocol has it
_DEFAULT_OUTPUT = "output0"  # the name of a single undeclared output
_NATIVE = {name: dtype.newbyteorder("=") for name, dtype in DATATYPES.items()}
_DATATYPE_NAMES = ", ".join([*DATATYPES, "BF16"])


def _native(datatype: str) -> np.dtype[Any]:
    """The native-order dtype of a datatype; BF16 through ml_dtypes (a 400 naming the extra without it)."""
    dtype = _NATIVE.get(datatype)
    if dtype is not None:
        return dtype
    try:
        return dtype_of(datatype)
    except ImportError:
        raise BadRequest(f"{BF16_HINT} on the server.") from None


class RequestedOutput(NamedTuple):
    """One entry of the request's ``outputs``: a tensor the client wants back, and how.

    Attributes:
        name: The output's name.
        binary: ``parameters.binary_data``; ``None`` when not given (the request-wide default applies).
    """

    name: str
    binary: bool | None = None


@dataclass
class InferenceRequest:
    """A decoded V2 inference request.

    Attributes:
        inputs: Every input tensor by name, in request order, with the sent shape and the datatype's dtype
            (BYTES: an ``object`` array of ``bytes``). Arrays are writable copies, never views of the body.
        id: The request's ``id``, echoed in the response.
        parameters: The request-wide ``parameters`` (empty if none were sent).
        outputs: The requested outputs; ``None`` when the request names none (all are returned).
        binary_output: ``parameters.binary_data_output``: return outputs as binary data unless an output
            says otherwise.
    """

    inputs: dict[str, np.ndarray[Any, Any]]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False


def _q(name: str) -> str:
    """A tensor name quoted for a message, shortened so a hostile name cannot bloat the response."""
    return repr(name if len(name) <= 64 else name[:64] + "...")


def _short(value: Any) -> str:
    """A client-sent value for a message, shortened."""
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


# -- requests ------------------------------------------------------------------------------------------


def decode_request(
    body: bytes,
    header_length: int | None = None,
    *,
    inputs: Sequence[TensorSpec] | None = None,
    outputs: Sequence[TensorSpec] | None = None,
) -> InferenceRequest:
    """Decode a V2 inference request body.

    Args:
        body: The whole (uncompressed) HTTP body.
        header_length: ``Inference-Header-Content-Length``: the length of the JSON header when binary tensor
            data follows it; ``None`` when the whole body is JSON.
        inputs: The model's declared inputs. When given, every declared input must be sent, with the declared
            datatype and a matching shape, and no other input is accepted.
        outputs: The model's declared outputs. When given, only these may be requested.

    Returns:
        The decoded request.

    Raises:
        BadRequest: Anything wrong with the request; the message names the offending input or output.
    """
    if not body:
        raise BadRequest("The request body is empty; send a V2 inference request (a JSON object).")
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if not 0 < header_length <= len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length is {header_length}, but the body has {len(body)} bytes."
            )
        header, binary = body[:header_length], memoryview(body)[header_length:]
    doc, numbers = loads_numbers(header)
    if numbers is not None:
        doc = _place_numbers(doc, numbers)
    if not isinstance(doc, dict):
        raise BadRequest("The inference request must be a JSON object.")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"The request 'id' must be a string, got {_short(request_id)}.")
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest("The request 'parameters' must be an object.")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise BadRequest("parameters.binary_data_output must be true or false.")
    requested = _requested_outputs(doc.get("outputs"), outputs)  # cheap checks before decoding any data
    return InferenceRequest(
        inputs=_decode_inputs(doc.get("inputs"), binary, inputs),
        id=request_id,
        parameters=parameters,
        outputs=requested,
        binary_output=binary_output,
    )


def _place_numbers(doc: Any, numbers: NumberLists) -> Any:
    """Each input's flat ``data`` that was parsed into an array becomes that array; every other list of
    numbers goes back to what the body says (the parameters, a shape, nested rows)."""
    entries = doc.get("inputs") if isinstance(doc, dict) else None
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict):
                _place_data(entry, numbers)
    return numbers.restore(doc)


def _place_data(entry: dict[str, Any], numbers: NumberLists) -> None:
    datatype: Any = entry.get("datatype")
    if datatype == "BYTES":  # numbers are an error for BYTES, whose message numpy's object arrays decide
        return
    integer = isinstance(datatype, str) and datatype in DATATYPES and DATATYPES[datatype].kind in "iu"
    array = numbers.take(entry.get("data"), exact_integers=integer)
    if array is not None:
        entry["data"] = array


def _decode_inputs(
    entries: Any, binary: memoryview, specs: Sequence[TensorSpec] | None
) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(entries, list):
        raise BadRequest("The request needs 'inputs': a list of input tensors.")
    declared = None if specs is None else {spec.name: spec for spec in specs}
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for index, entry in enumerate(entries):
        name, datatype, shape, parameters = _input_header(entry, index)
        if name in arrays:
            raise BadRequest(f"Input {_q(name)} is sent twice.")
        if declared is not None:
            _check_declared(name, datatype, shape, declared)
        if "binary_data_size" in parameters:
            end = _binary_end(name, parameters["binary_data_size"], "data" in entry, offset, len(binary))
            arrays[name] = _from_binary(name, datatype, shape, binary[offset:end])
            offset = end
        elif "data" in entry:
            arrays[name] = _from_json(name, datatype, shape, entry["data"])
        else:
            raise BadRequest(
                f"Input {_q(name)} has no data: send 'data', or binary data with parameters.binary_data_size."
            )
    if offset != len(binary):
        raise BadRequest(
            f"The body has {len(binary) - offset} bytes of binary data that no input's binary_data_size "
            "accounts for."
        )
    if declared is not None:
        missing = [name for name in declared if name not in arrays]
        if missing:
            raise BadRequest(f"Missing input {_q(missing[0])}: the model needs {', '.join(map(_q, declared))}.")
    return arrays


def _binary_end(name: str, size: Any, has_data: bool, offset: int, available: int) -> int:
    """Where an input's binary data ends, checked against the binary data the body actually has."""
    if has_data:
        raise BadRequest(f"Input {_q(name)} has both 'data' and parameters.binary_data_size.")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"Input {_q(name)}: binary_data_size must be a non-negative integer.")
    if offset + size > available:
        raise BadRequest(
            f"Input {_q(name)}: binary_data_size {size} points past the end of the body "
            f"(only {available - offset} bytes of binary data are left)."
        )
    return offset + size


def _input_header(entry: Any, index: int) -> tuple[str, str, tuple[int, ...], dict[str, Any]]:
    """Validate the name, datatype, shape and parameters of one input; the data is decoded later."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise BadRequest(f"inputs[{index}] must be an object with a non-empty string 'name'.")
    name: str = entry["name"]
    datatype = entry.get("datatype")
    if not isinstance(datatype, str) or (datatype not in DATATYPES and datatype != "BF16"):
        raise BadRequest(f"Input {_q(name)}: unknown datatype {_short(datatype)}; use one of {_DATATYPE_NAMES}.")
    if datatype == "BF16":
        _native(datatype)  # the install hint before anything else
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= _MAX_DIM for d in shape)
    ):
        raise BadRequest(
            f"Input {_q(name)}: shape must be a list of at most {MAX_DIMS} non-negative integers, "
            f"got {_short(shape)}."
        )
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest(f"Input {_q(name)}: parameters must be an object.")
    if "shared_memory_region" in parameters:
        raise BadRequest(f"Input {_q(name)}: shared memory is not supported; send the data in the body.")
    return name, datatype, tuple(shape), parameters


def _check_declared(name: str, datatype: str, shape: tuple[int, ...], declared: dict[str, TensorSpec]) -> None:
    spec = declared.get(name)
    if spec is None:
        raise BadRequest(f"Unexpected input {_q(name)}: the model takes {', '.join(map(_q, declared))}.")
    if datatype != spec.datatype:
        raise BadRequest(f"Input {_q(name)}: datatype {datatype} does not match the declared {spec.datatype}.")
    if not spec.accepts(shape):
        raise BadRequest(
            f"Input {_q(name)}: shape {list(shape)} does not match the declared {list(spec.shape)} "
            "(-1 is any size)."
        )


def _reshape(name: str, array: np.ndarray[Any, Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # e.g. [0, 2**62]: no elements, but more than numpy can index
        raise BadRequest(f"Input {_q(name)}: shape {list(shape)} is too large.") from exc


def _count_mismatch(name: str, shape: tuple[int, ...], count: int, got: int) -> BadRequest:
    return BadRequest(f"Input {_q(name)}: shape {list(shape)} holds {count} elements, but the data has {got}.")


def _check_layout(name: str, shape: tuple[int, ...], count: int, data: Any) -> None:
    """Reject JSON ``data`` that cannot fill ``shape`` before numpy builds anything from it.

    Why: numpy turns a mismatched nested list into a large object array before its size can be compared
    (measured: ``[[], [], ...]`` with shape ``[k, 0]`` cost 35 times the body's size, and 2.6 million rows
    against a smaller shape 290 MiB and 1.5 s before the 400). Walking the lists costs one step per list the
    body already holds and allocates nothing.
    """
    if not isinstance(data, list):  # a scalar: numpy's size check below costs nothing
        return
    if not data or not isinstance(data[0], list):  # flat, row-major
        if len(data) != count:
            raise _count_mismatch(name, shape, count, len(data))
        return
    level: list[Any] = [data]
    for depth, size in enumerate(shape):
        for item in level:
            if not isinstance(item, list) or len(item) != size:
                raise BadRequest(
                    f"Input {_q(name)}: data must be a flat or rectangular nested list of numbers matching shape "
                    f"{list(shape)} (dimension {depth} should have {size} items)."
                )
        if depth == len(shape) - 1 or not size:
            return
        level = [child for item in level for child in item]
        if level and not isinstance(level[0], list):  # fewer levels than dimensions: numpy decides below
            return


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray[Any, Any]:
    """An input given as JSON ``data``, nested or flat, in row-major order."""
    count = element_count(shape)
    if isinstance(data, np.ndarray):
        return _from_number_array(name, datatype, shape, count, data)
    _check_layout(name, shape, count, data)
    if count == 0:
        return _reshape(name, np.empty(0, dtype=_NATIVE[datatype]), shape)
    if datatype == "BYTES":
        try:
            raw = np.array(data, dtype=object)
        except (ValueError, TypeError, RecursionError) as exc:
            raise BadRequest(f"Input {_q(name)}: BYTES data must be a list of strings.") from exc
        if raw.size != count:
            raise _count_mismatch(name, shape, count, raw.size)
        items = raw.reshape(-1).tolist()
        if not all(isinstance(item, str) for item in items):
            raise BadRequest(f"Input {_q(name)}: BYTES data must be a list of strings.")
        array = np.empty(count, dtype=object)
        array[:] = [item.encode("utf-8") for item in items]
        return _reshape(name, array, shape)
    try:
        raw = np.array(data)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise BadRequest(f"Input {_q(name)}: data must be a flat or rectangular nested list of numbers.") from exc
    if raw.size != count:
        raise _count_mismatch(name, shape, count, raw.size)
    if count == 0:
        return _reshape(name, np.empty(0, dtype=_native(datatype)), shape)
    return _reshape(name, _cast_numbers(name, datatype, data, raw), shape)


def _from_number_array(
    name: str, datatype: str, shape: tuple[int, ...], count: int, raw: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """JSON ``data`` that :func:`mest.codecs._json_numbers.loads_numbers` parsed into an int64 or float64 array (of
    the rectangular nesting the body had): the same checks, conversions and messages as the same lists
    parsed by orjson get from :func:`_check_layout` and :func:`_from_json`."""
    if raw.ndim == 1 and len(raw) != count:
        raise _count_mismatch(name, shape, count, len(raw))
    for depth, size in enumerate(shape[: raw.ndim] if raw.ndim > 1 else ()):
        if raw.shape[depth] != size:
            raise BadRequest(
                f"Input {_q(name)}: data must be a flat or rectangular nested list of numbers matching shape "
                f"{list(shape)} (dimension {depth} should have {size} items)."
            )
        if not size:
            break
    if count == 0:  # as for lists: the shape has no elements, whatever the rows hold
        return _reshape(name, np.empty(0, dtype=_NATIVE[datatype]), shape)
    if raw.size != count:
        raise _count_mismatch(name, shape, count, raw.size)
    raw = raw.reshape(-1)
    return _reshape(name, _cast_numbers(name, datatype, raw, raw), shape)


def _cast_numbers(name: str, datatype: str, data: Any, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Check JSON values against a numeric datatype, then convert; never wraps around or truncates silently."""
    kind = raw.dtype.kind
    target = _native(datatype)
    if datatype == "BOOL":
        if kind != "b":
            raise BadRequest(f"Input {_q(name)}: BOOL data must be true or false.")
        return raw.astype(target)
    if kind == "f" and target.kind in "iu" and _exact_in_float64(raw):
        return _floats_to_integers(name, datatype, raw)
    if kind == "O" or (kind == "f" and target.kind in "iu"):  # huge integers made floats: exact, one by one
        return _cast_python_numbers(name, datatype, data)
    if kind not in "iuf":
        raise BadRequest(f"Input {_q(name)}: {datatype} data must be numbers.")
    if target.kind in "iu":
        info = np.iinfo(target)
        if int(raw.min()) < info.min or int(raw.max()) > info.max:
            raise BadRequest(f"Input {_q(name)}: a value is out of the range of {datatype}.")
    with np.errstate(all="ignore"):  # a float beyond FP16/FP32 range becomes inf, as IEEE 754 says
        return raw.astype(target)


def _exact_in_float64(raw: np.ndarray[Any, Any]) -> bool:
    """Whether every value is an integer float64 holds exactly (numpy also makes floats of huge integers)."""
    with np.errstate(all="ignore"):
        return bool(np.all(np.abs(raw) <= 2.0**53))


def _floats_to_integers(name: str, datatype: str, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Integral floats (``1.0``) for an integer datatype, checked and converted without a Python object per
    element (which cost 16 times the body's size)."""
    target = _NATIVE[datatype]
    with np.errstate(all="ignore"):
        if not bool(np.all(np.isfinite(raw))) or not bool(np.all(np.floor(raw) == raw)):
            raise BadRequest(f"Input {_q(name)}: {datatype} data must be integers.")
    info = np.iinfo(target)
    if int(raw.min()) < info.min or int(raw.max()) > info.max:
        raise BadRequest(f"Input {_q(name)}: a value is out of the range of {datatype}.")
    return raw.astype(target)


def _cast_python_numbers(name: str, datatype: str, data: Any) -> np.ndarray[Any, Any]:
    """Element by element, for what numpy could only hold as floats or objects (integral floats, integers
    beyond int64 mixed with others, or non-numbers), so no precision is lost before the checks."""
    items = np.array(data, dtype=object).reshape(-1).tolist()
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise BadRequest(f"Input {_q(name)}: {datatype} data must be numbers.")
    target = _native(datatype)
    if target.kind in "iu":
        if not all(isinstance(v, int) or v.is_integer() for v in items):  # also rejects NaN and infinity
            raise BadRequest(f"Input {_q(name)}: {datatype} data must be integers.")
        values = [int(v) for v in items]
        info = np.iinfo(target)
        if min(values) < info.min or max(values) > info.max:
            raise BadRequest(f"Input {_q(name)}: a value is out of the range of {datatype}.")
        return np.array(values, dtype=target)
    try:
        floats = np.array([float(v) for v in items])
    except OverflowError as exc:  # an integer beyond even FP64
        raise BadRequest(f"Input {_q(name)}: a value is out of the range of {datatype}.") from exc
    with np.errstate(all="ignore"):
        return floats.astype(target)


def _from_binary(name: str, datatype: str, shape: tuple[int, ...], buf: memoryview) -> np.ndarray[Any, Any]:
    """An input sent with the binary tensor data extension."""
    count = element_count(shape)
    if datatype == "BYTES":
        return _reshape(name, _binary_bytes(name, shape, count, buf), shape)
    dtype = _native(datatype) if datatype == "BF16" else DATATYPES[datatype]
    needed = count * dtype.itemsize
    if needed != len(buf):
        raise BadRequest(
            f"Input {_q(name)}: shape {list(shape)} of {datatype} needs {needed} bytes, "
            f"but binary_data_size is {len(buf)}."
        )
    if datatype == "BOOL":
        raw = np.frombuffer(buf, dtype=np.uint8)
        if raw.size and int(raw.max()) > 1:
            raise BadRequest(f"Input {_q(name)}: BOOL binary data must be bytes of value 0 or 1.")
        array = raw.astype(np.bool_)
    else:
        array = np.frombuffer(buf, dtype=dtype).astype(_native(datatype))  # a writable, native-order copy
    return _reshape(name, array, shape)


def _binary_bytes(name: str, shape: tuple[int, ...], count: int, buf: memoryview) -> np.ndarray[Any, Any]:
    size = len(buf)
    if count > size // _U32.size:  # every element takes at least its 4-byte length: check before looping
        raise BadRequest(
            f"Input {_q(name)}: shape {list(shape)} holds {count} BYTES elements, "
            f"more than binary_data_size {size} can hold."
        )
    items: list[bytes] = []
    offset = 0
    for _ in range(count):
        if size - offset < _U32.size:
            raise BadRequest(f"Input {_q(name)}: BYTES binary data ends inside an element's length.")
        (length,) = _U32.unpack_from(buf, offset)
        offset += _U32.size
        if length > size - offset:
            raise BadRequest(f"Input {_q(name)}: a BYTES element's length points past its binary data.")
        items.append(bytes(buf[offset : offset + length]))
        offset += length
    if offset != size:
        raise BadRequest(
            f"Input {_q(name)}: binary_data_size is {size}, but its {count} BYTES elements use {offset} bytes."
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _requested_outputs(entries: Any, specs: Sequence[TensorSpec] | None) -> list[RequestedOutput] | None:
    if entries is None or entries == []:
        return None
    if not isinstance(entries, list):
        raise BadRequest("The request 'outputs' must be a list.")
    declared = None if specs is None else {spec.name: spec for spec in specs}
    requested: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadRequest(f"outputs[{index}] must be an object with a string 'name'.")
        name: str = entry["name"]
        if name in seen:
            raise BadRequest(f"Output {_q(name)} is requested twice.")
        seen.add(name)
        if declared is not None and name not in declared:
            raise BadRequest(f"Unknown output {_q(name)}: the model returns {', '.join(map(_q, declared))}.")
        parameters = entry.get("parameters", {})
        if not isinstance(parameters, dict):
            raise BadRequest(f"Output {_q(name)}: parameters must be an object.")
        for unsupported in ("shared_memory_region", "classification"):
            if unsupported in parameters:
                raise BadRequest(f"Output {_q(name)}: parameter {unsupported!r} is not supported.")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise BadRequest(f"Output {_q(name)}: parameters.binary_data must be true or false.")
        requested.append(RequestedOutput(name, binary))
    return requested


# -- responses -----------------------------------------------------------------------------------------


def outputs_from_result(
    result: Any, declared: Sequence[TensorSpec] | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Turn what ``post_process`` returned into output tensors.

    Args:
        result: A mapping of output name to array-like (or a pydantic model, taken as the mapping of its
            fields), or a single array-like: the single declared output (``output0`` when nothing is declared).
        declared: The model's declared outputs. A returned tensor is converted to its declared datatype (a
            same-kind cast, such as FP64 to FP32) and must fit its declared shape.

    Returns:
        The output arrays by name, in the order returned.

    Raises:
        InferenceError: The result cannot be sent as V2 tensors (the message names the output).
    """
    specs = {spec.name: spec for spec in declared} if declared is not None else None
    dump = getattr(result, "model_dump", None)  # a pydantic model (a response_schema's), without importing pydantic
    if callable(dump) and not isinstance(result, np.ndarray):
        result = dump()
    if isinstance(result, Mapping):
        items = list(result.items())
    elif specs is None:
        items = [(_DEFAULT_OUTPUT, result)]
    elif len(specs) == 1:
        items = [(next(iter(specs)), result)]
    else:
        raise InferenceError(
            f"post_process returned a single value, but the model declares {len(specs)} outputs: "
            "return a dict of output name to array."
        )
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for name, value in items:
        if not isinstance(name, str):
            raise InferenceError(f"Output names must be strings; post_process returned the key {name!r}.")
        spec = None
        if specs is not None:
            spec = specs.get(name)
            if spec is None:
                raise InferenceError(
                    f"post_process returned output {_q(name)}, which the model does not declare."
                )
        arrays[name] = _output_array(name, value, spec)
    return arrays


def _output_array(name: str, value: Any, spec: TensorSpec | None) -> np.ndarray[Any, Any]:
    try:
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InferenceError(f"Output {_q(name)} cannot be converted to an array: {exc}") from exc
    datatype = datatype_of(array.dtype)
    if datatype is None:
        raise InferenceError(f"Output {_q(name)} has dtype {array.dtype}, which no V2 datatype carries.")
    if datatype == "BYTES":
        array = _bytes_array(name, array)
    if spec is not None:
        array = _conform(name, array, datatype, spec)
    return array


def _bytes_array(name: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    items = array.reshape(-1).tolist()
    encoded: list[bytes] = []
    for item in items:
        if isinstance(item, bytes):
            encoded.append(item)
        elif isinstance(item, str):
            encoded.append(item.encode("utf-8"))
        else:
            raise InferenceError(
                f"Output {_q(name)} holds an element of type {type(item).__name__}: an object array is sent as "
                "BYTES, whose elements must be str or bytes."
            )
    out = np.empty(len(encoded), dtype=object)
    out[:] = encoded
    return out.reshape(array.shape)


def _conform(name: str, array: np.ndarray[Any, Any], datatype: str, spec: TensorSpec) -> np.ndarray[Any, Any]:
    if datatype != spec.datatype:
        if "BYTES" in (datatype, spec.datatype):
            raise InferenceError(f"Output {_q(name)} is {datatype}, but the model declares {spec.datatype}.")
        try:
            array = array.astype(_native(spec.datatype), casting="same_kind")
        except TypeError as exc:
            raise InferenceError(
                f"Output {_q(name)} is {datatype}, which cannot be safely sent as the declared {spec.datatype}."
            ) from exc
    if not spec.accepts(array.shape):
        raise InferenceError(
            f"Output {_q(name)} has shape {list(array.shape)}, which does not match the declared "
            f"{list(spec.shape)}."
        )
    return array


def encode_response(
    request: InferenceRequest,
    outputs: Mapping[str, np.ndarray[Any, Any]],
    *,
    model_name: str,
    model_version: str | None = None,
) -> tuple[bytes, int | None]:
    """Encode the V2 inference response for ``request``.

    Args:
        request: The decoded request: its ``id`` is echoed, its requested outputs (and their binary flags)
            select what is sent.
        outputs: The output tensors, as :func:`outputs_from_result` returns them.
        model_name: The model that answered.
        model_version: Its version, if it has one.

    Returns:
        The body, and the length of its JSON header when binary tensor data follows it (the value of the
        ``Inference-Header-Content-Length`` response header), else ``None``.

    Raises:
        BadRequest: A requested output was not produced, or a BYTES output that is not UTF-8 was requested
            as JSON.
    """
    if request.outputs is None:
        selected = [(name, request.binary_output) for name in outputs]
    else:
        selected = []
        for wanted in request.outputs:
            if wanted.name not in outputs:
                produced = ", ".join(map(_q, outputs)) or "nothing"
                raise BadRequest(f"Unknown output {_q(wanted.name)}: the model returned {produced}.")
            selected.append((wanted.name, request.binary_output if wanted.binary is None else wanted.binary))
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in selected:
        array = outputs[name]
        datatype = datatype_of(array.dtype)
        assert datatype is not None, "outputs come from outputs_from_result"
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = _to_binary(name, array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json_data(name, array, datatype)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = entries
    header = json.dumps(doc)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _to_json_data(name: str, array: np.ndarray[Any, Any], datatype: str) -> Any:
    if datatype == "BYTES":
        try:
            return [item.decode("utf-8") for item in array.reshape(-1).tolist()]
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"Output {_q(name)} holds bytes that are not UTF-8 text: request it as binary data "
                "(parameters.binary_data: true)."
            ) from exc
    if datatype == "BF16":  # JSON carries numbers: exactly representable as FP32
        array = array.astype(np.float32)
    # A flat, C-contiguous array: orjson writes it without a Python list in between.
    return np.ascontiguousarray(array).reshape(-1)


def _to_binary(name: str, array: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype != "BYTES":
        dtype = array.dtype if datatype == "BF16" else DATATYPES[datatype]
        return np.ascontiguousarray(array, dtype=dtype).tobytes()
    parts: list[bytes] = []
    for item in array.reshape(-1).tolist():
        if len(item) > 0xFFFFFFFF:
            raise InferenceError(f"Output {_q(name)} has a BYTES element longer than 4 GiB.")
        parts.append(_U32.pack(len(item)))
        parts.append(item)
    return b"".join(parts)
