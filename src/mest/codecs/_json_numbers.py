"""A V2 body's long lists of numbers as numpy arrays: the document-level half of
:mod:`mest.codecs._number_spans` (which finds and parses the lists in the raw bytes).

Why a separate step from :func:`mest.codecs.json.loads`: only the V2 decoder knows where arrays are wanted
(an input's ``data``); everywhere else in the document a list must be what orjson would have built.
"""

from __future__ import annotations

import json as _stdlib_json
from typing import Any

import numpy as np
import orjson

from ._number_spans import Parsed, find_spans, has_long_digits, new_marker, parse_span
from .json import _SHAPE_CHECK_FROM, check_parse_cost, loads

__all__ = ["NumberLists", "loads_numbers"]


class NumberLists:
    """The long lists of numbers :func:`loads_numbers` parsed into numpy arrays.

    In the parsed document each such list is a one-element list holding a marker string: :meth:`take` turns
    one into its array where the caller wants arrays, and :meth:`restore` turns every other one back into the
    list orjson would have built, so the document means exactly what the body says.
    """

    def __init__(self, raw: bytes, marker: str, parsed: list[Parsed], spans: list[tuple[int, int]]):
        self._raw = raw
        self._marker = marker
        self._arrays: dict[int, Parsed] = dict(enumerate(parsed))
        self._spans = spans

    def __len__(self) -> int:
        """How many lists were parsed into arrays."""
        return len(self._spans)

    def _index(self, value: Any) -> int | None:
        if type(value) is list and len(value) == 1 and type(value[0]) is str and value[0].startswith(self._marker):
            return int(value[0][len(self._marker) :])
        return None

    def can_take(self, value: Any, *, exact_integers: bool = False) -> bool:
        """Whether :meth:`take` would give an array for ``value``."""
        index = self._index(value)
        if index is None:
            return False
        if not exact_integers or not self._arrays[index].floats:
            return True
        start, end = self._spans[index]
        return not has_long_digits(self._raw[start:end])

    def take(self, value: Any, *, exact_integers: bool = False) -> np.ndarray[Any, Any] | None:
        """The array ``value`` stands for (int64 or float64, flat), or ``None`` if it stands for none, or if
        ``exact_integers`` is asked for and a long integer among floats may have been rounded
        (:class:`mest.codecs._number_spans.Parsed`): the list is then restored as orjson parses it."""
        return self._pop(value) if self.can_take(value, exact_integers=exact_integers) else None

    def _pop(self, value: Any) -> np.ndarray[Any, Any]:
        index = self._index(value)
        if index is None:
            raise ValueError("not a list of numbers that was parsed into an array")
        return self._arrays.pop(index).values

    def restore(self, doc: Any) -> Any:
        """``doc`` with every list not taken as it was in the body (in place; the top level is returned)."""
        if not self._arrays:
            return doc
        top = [doc]
        stack: list[Any] = [top]
        while stack:
            container = stack.pop()
            items = container.items() if isinstance(container, dict) else enumerate(container)
            for key, value in list(items):
                index = self._index(value)
                if index is not None:
                    start, end = self._spans[index]
                    del self._arrays[index]
                    container[key] = _loads_tokens(self._raw[start - 1 : end + 1])
                elif isinstance(value, (list, dict)):
                    stack.append(value)
        return top[0]


def _marker_json(marker: str, index: int) -> bytes:
    """The marker of one list, as JSON: after the quote comes a backslash (see mest.codecs._number_spans)."""
    return b'"\\u0000' + marker[1:].encode("ascii") + str(index).encode("ascii") + b'"'


def loads_numbers(data: bytes) -> tuple[Any, NumberLists | None]:
    """Like :func:`loads`, but a large body's long lists of numbers (flat, or rectangular rows) are parsed
    into numpy arrays (8 bytes per number instead of 32: a 9 MiB list of ``1.0`` cost 20 times its size
    through orjson alone; see :mod:`mest.codecs._number_spans`).

    Returns:
        The document, and the lists parsed into arrays (``None`` when there were none): see
        :class:`NumberLists`.

    Raises:
        BadRequest: As :func:`loads`, with the same messages.
    """
    if len(data) < _SHAPE_CHECK_FROM:
        return loads(data), None
    check_parse_cost(data)
    marker = new_marker()
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    arrays: list[Parsed] = []
    kept: list[tuple[int, int]] = []
    position = 0
    for start, end in find_spans(data):
        values = parse_span(data[start:end])
        if values is None:
            continue
        pieces += [view[position:start], _marker_json(marker, len(arrays))]
        arrays.append(values)
        kept.append((start, end))
        position = end
    if not arrays:
        return loads(data), None
    pieces.append(view[position:])
    rest = b"".join(pieces)
    try:
        doc = orjson.loads(rest)
    except orjson.JSONDecodeError:
        try:
            doc = _stdlib_json.loads(rest) if b"NaN" in rest or b"Infinity" in rest else None
        except (ValueError, RecursionError):
            doc = None
        if doc is None:  # the body is malformed (or a list was inside a string): parse it as it is
            return loads(data), None
    return doc, NumberLists(data, marker, arrays, kept)


def _loads_tokens(data: bytes) -> Any:
    """orjson, or Python's parser for a text with ``NaN`` or infinities (already known to be valid)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _stdlib_json.loads(data)


