"""JSON via orjson, with numpy arrays and scalars serialized natively.

orjson serializes C-contiguous arrays of the common dtypes itself; the fallback below covers what it refuses
(non-contiguous views, float16, object arrays, numpy scalars of other types, pydantic models, sets).

Non-finite numbers are written and read as the tokens ``NaN``, ``Infinity`` and ``-Infinity``, as Triton,
tritonclient, Python's ``json`` and pandas do: strict JSON has no way to write them, and orjson's own choice,
``null``, silently turns a number into something else (docs/v2.md). Both directions cost nothing extra for
documents without them: the tokens are looked for only when orjson has written a ``null`` or refused a body.
"""

from __future__ import annotations

import json as _stdlib_json
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from ..errors import BadRequest

__all__ = ["JSON_CONTENT_TYPE", "MAX_PARSED_RATIO", "check_parse_cost", "dumps", "has_nonfinite", "is_json", "loads"]

JSON_CONTENT_TYPE = "application/json"
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fallback(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    dump = getattr(obj, "model_dump", None)  # pydantic v2 models, without importing pydantic
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Serialize to JSON bytes; NaN and infinities as ``NaN``, ``Infinity``, ``-Infinity``.

    Raises:
        TypeError: Something in ``obj`` has no JSON form.
    """
    try:
        out = orjson.dumps(obj, default=_fallback, option=_OPTIONS)
        if b"null" in out and has_nonfinite(obj):  # orjson writes NaN and infinities as null
            out = orjson.dumps(_with_tokens(obj), default=_fallback, option=_OPTIONS)
        return out
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc


#: Below this size a body is parsed without looking at its shape: the worst it can cost is small anyway.
_SHAPE_CHECK_FROM = 64 * 1024
#: What one parsed array or object costs at least (an empty ``list`` or ``dict`` and the pointer to it).
_CONTAINER_BYTES = 64
#: The most a body may cost in memory once parsed, as a multiple of its size.
MAX_PARSED_RATIO = 10


def check_parse_cost(data: bytes | str) -> None:
    """Refuse a large body whose arrays and objects alone would cost more than ``MAX_PARSED_RATIO`` times its
    size once parsed (``[[],[],…]`` costs 21 times), before parsing it. Counting brackets is one pass in C;
    tensors written as flat lists, or rows of numbers, are far below the limit.

    Raises:
        BadRequest: The body is too dense in arrays and objects for its size.
    """
    if len(data) < _SHAPE_CHECK_FROM:
        return
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    containers = raw.count(b"[") + raw.count(b"{")
    if containers * _CONTAINER_BYTES > MAX_PARSED_RATIO * len(raw):
        raise BadRequest(
            f"The JSON body holds {containers} arrays and objects in {len(raw)} bytes: parsed, that would cost "
            f"more than {MAX_PARSED_RATIO} times its size. Send tensor data as flat lists (or as binary data)."
        )


def loads(data: bytes | str) -> Any:
    """Parse JSON, accepting the tokens ``NaN``, ``Infinity`` and ``-Infinity`` for non-finite numbers.

    Raises:
        BadRequest: The data is not valid JSON (the message says where), or too costly to parse
            (:func:`check_parse_cost`).
    """
    check_parse_cost(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if b"NaN" in raw or b"Infinity" in raw:
            # Python's parser reads the tokens (and is otherwise as strict as orjson about what JSON is).
            try:
                return _stdlib_json.loads(data)
            except (ValueError, RecursionError):
                pass
        raise BadRequest(f"Malformed JSON: {exc}") from exc


def _token(value: float) -> bytes:
    if math.isnan(value):
        return b"NaN"
    return b"Infinity" if value > 0 else b"-Infinity"


def has_nonfinite(obj: Any) -> bool:
    """Whether ``obj`` (dicts, lists and tuples of floats, numpy scalars and arrays) holds a NaN or an infinity."""
    if isinstance(obj, float | np.floating):
        return not math.isfinite(obj)
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind == "f" and not bool(np.isfinite(obj).all())
    if isinstance(obj, dict):
        return any(has_nonfinite(value) for value in obj.values())
    if isinstance(obj, list | tuple):
        return any(has_nonfinite(value) for value in obj)
    return False


def _array_with_tokens(array: np.ndarray[Any, Any]) -> orjson.Fragment:
    """An array holding NaN or infinities as JSON text: orjson's, with each ``null`` it wrote for one of them
    (in C order, the order it writes elements) replaced by its token. A float array has no other nulls."""
    text = orjson.dumps(array, default=_fallback, option=_OPTIONS)
    values = array[~np.isfinite(array)].reshape(-1).tolist()
    tokens: Iterator[bytes] = (_token(value) for value in values)
    return orjson.Fragment(re.sub(rb"null", lambda _: next(tokens), text))


def _with_tokens(obj: Any) -> Any:
    """A copy of ``obj`` in which every non-finite number is a fragment of JSON text holding its token."""
    if isinstance(obj, float | np.floating):
        return obj if math.isfinite(obj) else orjson.Fragment(_token(float(obj)))
    if isinstance(obj, np.ndarray):
        return _array_with_tokens(obj) if has_nonfinite(obj) else obj
    if isinstance(obj, dict):
        return {key: _with_tokens(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_with_tokens(value) for value in obj]
    return obj


def is_json(media_type: str | None) -> bool:
    """Whether a media type (already without parameters) is JSON: ``application/json`` or ``*/*+json``."""
    return media_type is not None and (media_type == JSON_CONTENT_TYPE or media_type.endswith("+json"))
