"""JSON via orjson, with numpy arrays and scalars serialized natively.

orjson serializes C-contiguous arrays of the common dtypes itself; the fallback below covers what it refuses
(non-contiguous views, float16, object arrays, numpy scalars of other types, pydantic models, sets).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..errors import BadRequest

__all__ = ["JSON_CONTENT_TYPE", "dumps", "is_json", "loads"]

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
    """Serialize to JSON bytes.

    Raises:
        TypeError: Something in ``obj`` has no JSON form.
    """
    try:
        return orjson.dumps(obj, default=_fallback, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc


def loads(data: bytes | str) -> Any:
    """Parse JSON.

    Raises:
        BadRequest: The data is not valid JSON (the message says where).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc}") from exc


def is_json(media_type: str | None) -> bool:
    """Whether a media type (already without parameters) is JSON: ``application/json`` or ``*/*+json``."""
    return media_type is not None and (media_type == JSON_CONTENT_TYPE or media_type.endswith("+json"))
