"""Parse the long lists of numbers in a JSON body straight into numpy arrays, and the rest with orjson.

Why: orjson builds one Python float (24 bytes, and 8 for its pointer) for each number of ``1.0,`` (4 bytes),
and numpy then copies them, so a 9 MiB V2 body of floats cost 20 times its size in memory before Mest saw
it. Here each long bracketed list of numbers (flat, or rectangular rows of them) is found in the raw bytes,
parsed a chunk at a time by orjson into one preallocated array (so only one chunk's Python numbers exist at
once), and replaced in the text by a one-element list holding a marker string; orjson then parses what is
left, which is small.

Why this cannot change what a body means:

* orjson itself parses every number (strictly, as for the whole body; Python's parser for a chunk holding
  ``NaN`` or an infinity, as :func:`mest.codecs.json.loads` does), and a list is replaced only if all of it
  parsed, with the separators of a rectangular array; anything else stays in the text for orjson to report.
* The marker holds a random nonce, so no string a client sends can pass for one.
* A list that is really inside a string (``"[1,2,3]"``) is recognised by counting the quotes before it;
  should that count ever be wrong, the replacement text closes the string and is followed by a backslash,
  which JSON never allows outside a string: orjson fails and the caller parses the original body instead.
* A list of integers is an int64 array only if every one fits (else orjson's path decides, as before); in a
  list of floats, an integer of 16 or more digits is rounded to a double, which the caller is told
  (:class:`Parsed`), since for an integer datatype orjson's path keeps it exact.
"""

from __future__ import annotations

import itertools
import json as _stdlib_json
import secrets
from typing import Any, NamedTuple

import numpy as np
import orjson

__all__ = ["MIN_SPAN_BYTES", "Parsed", "find_spans", "has_long_digits", "new_marker", "parse_span"]

#: Lists of numbers shorter than this (in bytes of text) are left to orjson: they cost little anyway.
MIN_SPAN_BYTES = 2048
_BLOCK = MIN_SPAN_BYTES // 2  # a run of MIN_SPAN_BYTES holds at least one whole aligned block

#: How much of a list orjson parses at a time: its Python floats for this much text are the transient cost.
_CHUNK_BYTES = 1 << 13
#: Digits as ``d``, everything else as a comma: a run of 16 ``d`` is a number with 16 digits in a row.
_DIGIT_RUNS = bytes(ord("d") if chr(char).isdigit() and char < 128 else ord(",") for char in range(256))
_LONG_INTEGER = b"d" * 16  # beyond 15 digits an integer may not be exact in a double

#: Bytes that can occur in a list of numbers, nested or not: where candidate runs are looked for.
_NUMERIC_TABLE = bytearray(256)
for _char in b"0123456789,-+.eE \t\r\nNaIfinty[]":
    _NUMERIC_TABLE[_char] = 1
_NUMERIC = bytes(_NUMERIC_TABLE)
_NUMBER_BYTES = b"0123456789-+.eENaIfinty"
_WHITESPACE = b" \t\r\n"
_TRAILING = b" \t\r\n,"
_OPENING = b"[ \t\r\n"
_CLOSING = b"] \t\r\n"
_MAX_DEPTH = 32  # nesting levels inside the outer list: the separator check costs one pass per level
_MAX_PREFIX = 4096  # bytes of brackets and whitespace before the first number


def new_marker() -> str:
    """The prefix of this parse's markers: a NUL, so it never looks like text, and a random nonce."""
    return f"\x00mest-{secrets.token_hex(8)}-"


def find_spans(raw: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of the inside of each bracketed run of number-like bytes and brackets (a flat or
    nested list of numbers, once :func:`parse_span` has checked it) of at least :data:`MIN_SPAN_BYTES`, that
    is outside every string (as far as counting quotes tells; see above)."""
    numeric = np.frombuffer(raw.translate(_NUMERIC), dtype=np.bool_)
    whole = len(raw) // _BLOCK * _BLOCK
    full = np.flatnonzero(numeric[:whole].reshape(-1, _BLOCK).all(axis=1))
    spans: list[tuple[int, int]] = []
    quotes = _QuoteCounter(raw)
    index = 0
    while index < len(full):
        first = last = int(full[index])
        while index + 1 < len(full) and full[index + 1] == last + 1:
            index += 1
            last = int(full[index])
        index += 1
        start = _run_start(numeric, first * _BLOCK)
        end = _run_end(numeric, (last + 1) * _BLOCK)
        start, end = _trimmed(raw, start, end)
        if (
            end - start >= MIN_SPAN_BYTES
            and raw[start] == ord("[")
            and raw[end - 1] == ord("]")
            and quotes.outside_string(start)
        ):
            spans.append((start + 1, end - 1))
    return spans


def _trimmed(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """A run without its leading whitespace and trailing whitespace and commas (``[1, 2], `` is a list),
    looking at most :data:`_MAX_PREFIX` bytes from each end (longer padding: orjson's path, where whitespace
    costs nothing)."""
    limit = min(end, start + _MAX_PREFIX)
    while start < limit and raw[start] in _WHITESPACE:
        start += 1
    limit = max(start, end - _MAX_PREFIX)
    while end > limit and raw[end - 1] in _TRAILING:
        end -= 1
    return start, end


def _run_start(numeric: np.ndarray[Any, Any], at: int) -> int:
    """The first index of the run of numeric bytes that holds ``at``."""
    low = at
    while low > 0:
        window = numeric[max(0, low - _BLOCK) : low]
        outside = np.flatnonzero(~window)
        if len(outside):
            return max(0, low - _BLOCK) + int(outside[-1]) + 1
        low = max(0, low - _BLOCK)
    return 0


def _run_end(numeric: np.ndarray[Any, Any], at: int) -> int:
    """The index just past the run of numeric bytes that ends at or after ``at``."""
    high = at
    while high < len(numeric):
        outside = np.flatnonzero(~numeric[high : high + _BLOCK])
        if len(outside):
            return high + int(outside[0])
        high += _BLOCK
    return len(numeric)


class _QuoteCounter:
    """Whether a position is outside every string, by the parity of the unescaped quotes before it.

    A quote is escaped when an odd number of backslashes precedes it; the number of quotes preceded by at
    least k backslashes is ``count(k backslashes + quote)`` (such matches cannot overlap), so the escaped
    ones are the alternating sum over k. Past 16 backslashes in a row before a quote the count may be wrong;
    orjson then catches the mistake (see the module docstring), at the cost of the plain parse.
    """

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._escapes = b"\\" in raw and b'\\"' in raw  # a backslash at all: one memchr
        self._position = 0
        self._quotes = 0

    def outside_string(self, position: int) -> bool:
        raw, low = self._raw, self._position
        count = raw.count(b'"', low, position)
        if self._escapes:
            for k in range(1, 17):
                found = raw.count(b"\\" * k + b'"', low, position)
                count -= found if k % 2 else -found
                if not found:
                    break
        self._position, self._quotes = position, self._quotes + count
        return self._quotes % 2 == 0


class Parsed(NamedTuple):
    """A list's numbers, and whether they are floats.

    Among floats, an integer of 16 or more digits (``12345678901234567``) was rounded to a double, which
    matters only for an integer datatype (orjson's path keeps it an exact Python ``int``): ask
    :func:`has_long_digits` of the list's text before using such an array for one.
    """

    values: np.ndarray[Any, Any]
    floats: bool


def has_long_digits(text: bytes) -> bool:
    """Whether ``text`` holds 16 or more digits in a row (one C pass and one search)."""
    return _LONG_INTEGER in text.translate(_DIGIT_RUNS)


def parse_span(text: bytes) -> Parsed | None:
    """The numbers of a list's inside (``1.0, 2, NaN``, or rows: ``[1, 2], [3, 4]``) as an int64 (all
    integers) or float64 array of the list's shape; ``None`` when it is not a rectangular list of JSON
    numbers, or is one that only orjson's own path parses exactly (see above)."""
    compact = text.strip(_WHITESPACE)
    if compact.startswith(b"["):
        return _parse_nested(compact)
    if b"[" in compact or b"]" in compact:
        return None
    return _parse_flat(compact)


def _parse_nested(compact: bytes) -> Parsed | None:
    """Rows (of rows...) of numbers: the separators between numbers (``,``, ``],[``, ``]],[[``...) must be
    those of a rectangular array, checked by building them from the shape the first rows imply."""
    start, end = 0, len(compact)
    while start < min(end, _MAX_PREFIX) and compact[start] in _OPENING:
        start += 1
    while end > max(start, len(compact) - _MAX_PREFIX) and compact[end - 1] in _CLOSING:
        end -= 1
    depth = compact.count(b"[", 0, start)
    if start >= _MAX_PREFIX or depth > _MAX_DEPTH or compact.count(b"]", end) != depth:
        return None  # deeper than any tensor (or padded oddly): orjson's path decides, at no extra cost
    inner = compact[start:end]
    separators = inner.translate(None, _NUMBER_BYTES + _WHITESPACE)
    for brackets in range(depth, 0, -1):
        separators = separators.replace(b"]" * brackets + b"," + b"[" * brackets, bytes((brackets,)))
    separators = separators.replace(b",", b"\x00")
    if b"[" in separators or b"]" in separators:
        return None
    levels = np.frombuffer(separators, dtype=np.uint8)
    total = len(levels) + 1
    strides = [1]
    for level in range(1, depth + 1):
        found = np.flatnonzero(levels >= level)
        strides.append(int(found[0]) + 1 if len(found) else total)
    strides.append(total)
    if any(outer % inner_ for inner_, outer in itertools.pairwise(strides)):
        return None
    expected = np.zeros(len(levels), dtype=np.uint8)
    for level in range(1, depth + 1):
        expected[strides[level] - 1 :: strides[level]] = level
    if not np.array_equal(levels, expected):
        return None
    del levels, expected, separators
    parsed = _parse_flat(inner.translate(None, b"[]"))
    if parsed is None or len(parsed.values) != total:
        return None
    shape = [outer // inner_ for inner_, outer in itertools.pairwise(strides)][::-1]
    return Parsed(parsed.values.reshape(shape), parsed.floats)


def _parse_flat(text: bytes) -> Parsed | None:
    """Numbers separated by commas, parsed by orjson a chunk at a time (so it, not a lenient parser, says
    what a JSON number is) into one preallocated array: the Python numbers of one chunk are all that exist
    at once. ``NaN`` and the infinities go through Python's parser, as in :func:`mest.codecs.json.loads`."""
    floats = any(mark in text for mark in (b".", b"e", b"E", b"N", b"I"))
    values = np.empty(text.count(b",") + 1, dtype=np.float64 if floats else np.int64)
    position = filled = 0
    while position < len(text):
        cut = text.find(b",", position + _CHUNK_BYTES)
        cut = len(text) if cut < 0 else cut
        items = _load_chunk(b"[" + text[position:cut] + b"]")
        if items is None or filled + len(items) > len(values):
            return None
        try:
            values[filled : filled + len(items)] = np.fromiter(items, dtype=values.dtype, count=len(items))
        except (OverflowError, TypeError, ValueError):  # an integer beyond int64: orjson's path decides
            return None
        filled += len(items)
        position = cut + 1
    if filled != len(values):
        return None
    return Parsed(values, floats)


def _load_chunk(chunk: bytes) -> list[Any] | None:
    try:
        items = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        if b"N" not in chunk and b"I" not in chunk:
            return None
        try:
            items = _stdlib_json.loads(chunk)
        except ValueError:
            return None
    return items if type(items) is list else None
