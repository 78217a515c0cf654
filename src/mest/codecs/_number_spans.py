"""Parse the long flat lists of numbers in a JSON body with numpy, and the rest with orjson.

Why: orjson builds one Python float (24 bytes, and 8 for its pointer) for each number of ``1.0,`` (4 bytes),
so a 9 MiB V2 body of floats cost 20 times its size in memory before Mest saw it. Here each long bracketed
list of plain numbers is found in the raw bytes, checked against JSON's number grammar (numpy's own text
parsing is lenient: ``+1``, ``01``, ``.5``, ``1.`` and ``inf`` would pass it), parsed by numpy into one array
(8 bytes per number, no Python object per element), and replaced in the text by a one-element list holding a
marker string; orjson then parses what is left.

Why this cannot change what a body means:

* A list is replaced only if all of it is valid JSON numbers (or the tokens ``NaN``, ``Infinity`` and
  ``-Infinity``), so a malformed list stays in the text and orjson reports it as before.
* The marker holds a random nonce, so no string a client sends can pass for one.
* A list that is really inside a string (``"[1,2,3]"``) is recognised by counting the quotes before it;
  should that count ever be wrong, the replacement text closes the string and is followed by a backslash,
  which JSON never allows outside a string: orjson fails and the caller parses the original body instead.
* Integers are parsed as int64 only when they have at most 15 digits (so exactly); a list of integers with
  more digits, or with a number too large for a double (which orjson refuses), is left to orjson, and so is
  a list of floats with a long run of digits when an integer datatype needs it (:class:`Parsed`).
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

import numpy as np

__all__ = ["MIN_SPAN_BYTES", "Parsed", "find_spans", "new_marker", "parse_span"]

#: Lists of numbers shorter than this (in bytes of text) are left to orjson: they cost little anyway.
MIN_SPAN_BYTES = 2048
_BLOCK = MIN_SPAN_BYTES // 2  # a run of MIN_SPAN_BYTES holds at least one whole aligned block

# Character classes of the number grammar, as byte values (``bytes.translate`` maps text to them in C).
_BAD, _DIGIT, _ZERO, _COMMA, _MINUS, _PLUS, _DOT, _EXP, _TOKEN = range(9)
_CLASS_TABLE = bytearray(256)
for _char, _class in {
    **dict.fromkeys(b"123456789", _DIGIT),
    ord("0"): _ZERO,
    ord(","): _COMMA,
    ord("-"): _MINUS,
    ord("+"): _PLUS,
    ord("."): _DOT,
    ord("e"): _EXP,
    ord("E"): _EXP,
    ord("T"): _TOKEN,  # NaN, Infinity and -Infinity, each replaced by T before classifying
}.items():
    _CLASS_TABLE[_char] = _class
_CLASSES = bytes(_CLASS_TABLE)
_DIGITS = (_DIGIT, _ZERO)
_ALLOWED_AFTER = {  # class: the classes it may follow
    _DIGIT: (_COMMA, _MINUS, _PLUS, _DOT, _EXP, *_DIGITS),
    _ZERO: (_COMMA, _MINUS, _PLUS, _DOT, _EXP, *_DIGITS),
    _COMMA: (*_DIGITS, _TOKEN),
    _MINUS: (_COMMA, _EXP),
    _PLUS: (_EXP,),
    _DOT: _DIGITS,
    _EXP: _DIGITS,
    _TOKEN: (_COMMA,),
}
#: Each class after a class it may follow, as the byte ``previous << 4 | current``.
_PAIRS = bytes(_prev << 4 | _cur for _cur, _prevs in _ALLOWED_AFTER.items() for _prev in _prevs)
_FIRST = bytes(_class for _class, _prevs in _ALLOWED_AFTER.items() if _COMMA in _prevs)
_LAST = bytes(_ALLOWED_AFTER[_COMMA])
#: A 0 that starts an integer part followed by a digit (a leading zero), after a comma or at the start.
_LEADING_ZEROS = [bytes((*prefix, _ZERO, digit)) for prefix in ((_COMMA,), (_COMMA, _MINUS)) for digit in _DIGITS]
_ZERO_THEN_DIGIT = [bytes((_ZERO, digit)) for digit in _DIGITS]
#: Among the dots, exponents and commas of the text in order: a second dot or exponent in one number.
_MARKS_ONLY = bytes((_DIGIT, _ZERO, _MINUS, _PLUS, _TOKEN))
_TWICE = [bytes((_DOT, _DOT)), bytes((_EXP, _DOT)), bytes((_EXP, _EXP))]
_DIGITS_ONE = bytes.maketrans(bytes((_ZERO,)), bytes((_DIGIT,)))
_LONG_INTEGER = bytes((_DIGIT,)) * 16  # beyond 15 digits an integer may not be exact in a double

#: Bytes that can occur in a list of numbers (brackets excluded): where candidate runs are looked for.
_NUMERIC_TABLE = bytearray(256)
for _char in b"0123456789,-+.eE \t\r\nNaIfinty":
    _NUMERIC_TABLE[_char] = 1
_NUMERIC = bytes(_NUMERIC_TABLE)
_WHITESPACE = b" \t\r\n"


def new_marker() -> str:
    """The prefix of this parse's markers: a NUL, so it never looks like text, and a random nonce."""
    return f"\x00mest-{secrets.token_hex(8)}-"


def find_spans(raw: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of the inside of each bracketed run of number-like bytes of at least
    :data:`MIN_SPAN_BYTES` that is outside every string (as far as counting quotes tells; see above)."""
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
        if (
            end - start >= MIN_SPAN_BYTES
            and start > 0
            and raw[start - 1] == ord("[")
            and end < len(raw)
            and raw[end] == ord("]")
            and quotes.outside_string(start)
        ):
            spans.append((start, end))
    return spans


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
        self._escapes = b'\\"' in raw
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
    """A list's numbers, and whether every integer in it is exactly what the text says.

    ``exact`` is false for floats among which a run of 16 or more digits occurs: an integer such as
    ``12345678901234567`` among them was rounded to a double, which matters only for an integer datatype
    (orjson keeps it a Python ``int``): such a list is then left to orjson.
    """

    values: np.ndarray[Any, Any]
    exact: bool


def parse_span(text: bytes) -> Parsed | None:
    """The numbers of a list's inside (``1.0, 2, NaN``) as int64 (all integers) or float64; ``None`` when it
    is not strictly a list of JSON numbers, or is one that only orjson can parse exactly (see above)."""
    if b"T" in text:
        return None
    compact = _without_whitespace(text) if _has_whitespace(text) else text
    if compact is None:
        return None
    has_tokens = b"N" in compact or b"I" in compact
    tokens = compact
    if has_tokens:
        tokens = compact.replace(b"-Infinity", b"T").replace(b"Infinity", b"T").replace(b"NaN", b"T")
    classes = tokens.translate(_CLASSES)
    if not _grammatical(classes):
        return None
    long_digits = _LONG_INTEGER in classes.translate(_DIGITS_ONE)
    del classes
    integers = not has_tokens and b"." not in compact and b"e" not in compact and b"E" not in compact
    if integers and long_digits:
        return None  # may not fit int64, nor a double exactly
    values = np.fromstring(compact, dtype=np.int64 if integers else np.float64, sep=",")
    if len(values) != tokens.count(b",") + 1:
        return None
    if not integers and not has_tokens and not bool(np.isfinite(values).all()):
        return None  # 1e400: orjson refuses it, and so must this path
    return Parsed(values, not long_digits)


def _has_whitespace(text: bytes) -> bool:
    return any(char in text for char in (b" ", b"\n", b"\t", b"\r"))


def _without_whitespace(text: bytes) -> bytes | None:
    """``text`` without the whitespace JSON allows in a list (around commas, at the ends); ``None`` if there
    is other whitespace (``1 2``), or runs too long to strip quickly (orjson then reads the list: whitespace
    costs it nothing)."""
    compact = text.strip(_WHITESPACE).replace(b", ", b",")  # Python's json.dumps writes ", "
    for _ in range(16):
        if not _has_whitespace(compact):
            return compact
        before = len(compact)
        for char in (b" ", b"\n", b"\t", b"\r"):
            compact = compact.replace(b"," + char, b",").replace(char + b",", b",")
        if len(compact) == before:
            return None
    return None


def _grammatical(classes: bytes) -> bool:
    """Whether a text (as its byte classes) is numbers (``-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?``)
    or ``T`` separated by commas: each class against the one before it in one numpy pass, the rest as
    substring searches (all in C, a few bytes of memory per byte of text)."""
    if not classes or bytes((_BAD,)) in classes or classes[0] not in _FIRST or classes[-1] not in _LAST:
        return False
    codes = np.frombuffer(classes, dtype=np.uint8)
    pairs = codes[:-1] << 4
    pairs |= codes[1:]
    if pairs.tobytes().translate(None, _PAIRS):  # what is left is a pair that may not be
        return False
    del codes, pairs
    padded = bytes((_COMMA,)) + classes[:3]
    if any(zeros in classes for zeros in _ZERO_THEN_DIGIT) and any(  # the second test only if it can be true
        zeros in classes or padded.startswith(zeros) for zeros in _LEADING_ZEROS
    ):
        return False
    marks = classes.translate(None, _MARKS_ONLY)
    return not any(twice in marks for twice in _TWICE)
