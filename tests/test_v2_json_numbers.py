"""Long lists of numbers (flat, or rectangular rows) in a large V2 JSON body are parsed straight into numpy
arrays, not one Python object per number (mest.codecs._number_spans, mest.codecs._json_numbers): the same
arrays, the same errors and messages as orjson's path, and a bounded peak memory. Each test compares the two
paths on the same body; orjson's path is exactly what a body gets when no list is found in it (the finder
switched off for the second decode)."""

from __future__ import annotations

import json as stdlib_json
import random
import tracemalloc
from typing import Any

import numpy as np
import orjson
import pytest

from mest.codecs import _json_numbers
from mest.codecs import json as mest_json
from mest.codecs.v2 import InferenceRequest, decode_request
from mest.errors import BadRequest

N = 30_000  # elements: the body is over the 64 KiB from which lists are looked for


def _body(datatype: str, shape: list[int], data_text: bytes, extra: bytes = b"") -> bytes:
    head = orjson.dumps({"name": "x", "datatype": datatype, "shape": shape})
    return b'{"inputs":[' + head[:-1] + b',"data":' + data_text + b"}" + extra + b"]}"


def _flat(values: list[Any], separator: bytes = b",") -> bytes:
    return b"[" + separator.join(stdlib_json.dumps(v).encode() for v in values) + b"]"


def _outcome(body: bytes) -> tuple[str, Any]:
    try:
        request = decode_request(body)
    except BadRequest as exc:
        return "error", str(exc)
    return "ok", request


def _same(new: tuple[str, Any], old: tuple[str, Any]) -> None:
    assert new[0] == old[0], (new, old)
    if new[0] == "error":
        assert new[1] == old[1]
        return
    a: InferenceRequest = new[1]
    b: InferenceRequest = old[1]
    assert (a.id, a.parameters, a.outputs, a.binary_output) == (b.id, b.parameters, b.outputs, b.binary_output)
    assert list(a.inputs) == list(b.inputs)
    for name in a.inputs:
        assert a.inputs[name].dtype == b.inputs[name].dtype
        np.testing.assert_array_equal(a.inputs[name], b.inputs[name])


def _both(body: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[str, Any], tuple[str, Any]]:
    new = _outcome(body)
    with monkeypatch.context() as patch:
        patch.setattr(_json_numbers, "find_spans", lambda raw: [])
        old = _outcome(body)
    _same(new, old)
    return new, old


def _taken(body: bytes) -> int:
    """How many lists the numpy path takes out of ``body``."""
    _, numbers = _json_numbers.loads_numbers(body)
    return 0 if numbers is None else len(numbers)


@pytest.mark.parametrize(
    "datatype", ["FP32", "FP64", "FP16", "INT64", "INT32", "INT8", "UINT8", "UINT64", "BOOL", "BYTES"]
)
@pytest.mark.parametrize("kind", ["integers", "floats", "integral floats"])
def test_every_datatype_gets_what_orjson_gives(datatype: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    values: list[Any] = {
        "integers": [rng.randint(0, 100) for _ in range(N)],
        "floats": [rng.uniform(-1e3, 1e3) for _ in range(N)],
        "integral floats": [float(rng.randint(-100, 100)) for _ in range(N)],
    }[kind]
    body = _body(datatype, [N], _flat(values))
    assert _taken(body) == 1
    _both(body, monkeypatch)


@pytest.mark.parametrize("separator", [b", ", b" , ", b",\n    ", b"\t,\r\n"])
def test_whitespace_around_commas_is_allowed(separator: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _body("FP32", [N], _flat([1.5] * N, separator))
    assert _taken(body) == 1
    new, _ = _both(body, monkeypatch)
    assert new[1].inputs["x"].tolist() == [1.5] * N


@pytest.mark.parametrize(
    "bad",
    [b"1,,2", b"01", b"-01", b"1.2.3", b"1e5.3", b"1e5e3", b"+1", b".5", b"1.", b"-", b"1e", b"1e+", b"nan",
     b"inf", b"NaNaN", b"-NaN", b"1-2", b"0x1", b"1 2", b"--1", b"1E+-3", b"Infinity1", b"1e400", b"1,"],
)
def test_a_malformed_number_in_a_long_list_is_the_same_error(bad: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    text = b"[" + b"1.0," * (N // 2) + bad + b",2.0" * (N // 2) + b"]"
    new, _ = _both(_body("FP32", [N + 1], text), monkeypatch)
    assert new[0] == "error"


@pytest.mark.parametrize("intruder", [b"true", b'"1"', b"null", b"[1]", b"{}"])
def test_a_non_number_in_a_long_list_is_the_same_error(intruder: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    text = b"[" + b"1.0," * (N // 2) + intruder + b",2.0" * (N // 2) + b"]"
    for datatype in ("FP32", "INT64", "BOOL", "BYTES"):
        _both(_body(datatype, [N + 1], text), monkeypatch)  # true counts as 1.0 for FP32, as before


def test_nan_and_infinity_tokens_in_a_long_list(monkeypatch: pytest.MonkeyPatch) -> None:
    text = b"[" + b"NaN,Infinity,-Infinity,1.5," * (N // 4) + b"0]"
    body = _body("FP32", [N + 1], text)
    assert _taken(body) == 1
    new, _ = _both(body, monkeypatch)
    array = new[1].inputs["x"]
    assert np.isnan(array[0]) and array[1] == np.inf and array[2] == -np.inf and array[3] == 1.5
    assert _both(_body("INT64", [N + 1], text), monkeypatch)[0][1].endswith("INT64 data must be integers.")


@pytest.mark.parametrize(
    ("datatype", "extreme"),
    [("INT64", 2**63 - 1), ("INT64", -(2**63)), ("UINT64", 2**64 - 1), ("INT64", 2**63), ("INT64", 10**15 - 1),
     ("INT64", 2**53 + 1), ("FP64", 2**53 + 1), ("INT32", 2**31), ("UINT8", -1)],
)
def test_integer_extremes_stay_exact(datatype: str, extreme: int, monkeypatch: pytest.MonkeyPatch) -> None:
    values = [1] * N + [extreme]
    new, _ = _both(_body(datatype, [N + 1], _flat(values)), monkeypatch)
    if new[0] == "ok" and datatype != "FP64":
        assert int(new[1].inputs["x"][-1]) == extreme


def test_integral_floats_beyond_2_53_go_the_exact_way(monkeypatch: pytest.MonkeyPatch) -> None:
    text = b"[" + b"1.0," * N + b"1e20]"
    new, _ = _both(_body("INT64", [N + 1], text), monkeypatch)
    assert new[1].endswith("out of the range of INT64.")
    _both(_body("UINT64", [N + 1], b"[" + b"1.0," * N + b"1e19]"), monkeypatch)


def test_a_count_mismatch_names_both_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    new, _ = _both(_body("FP32", [N + 5], _flat([1.0] * N)), monkeypatch)
    assert new[1] == f"Input 'x': shape [{N + 5}] holds {N + 5} elements, but the data has {N}."


def test_bytes_data_that_holds_a_list_of_numbers_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    inside = "[" + ",".join(["1"] * N) + "]"
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [3],
                     "data": [inside, 'say "[' + ",".join(["2"] * N) + ']"', "1,2,3"]}]}
    )
    assert _taken(body) == 0  # recognised as inside strings, escaped quotes and all
    new, _ = _both(body, monkeypatch)
    assert new[1].inputs["x"][0] == inside.encode()


def test_a_list_inside_a_string_after_long_backslash_runs_still_parses_right(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "\\" * 20 + '"[' + ",".join(["3"] * N) + "]"
    body = orjson.dumps({"parameters": {key: 1}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [N],
                                                              "data": [1.5] * N}]})
    new, _ = _both(body, monkeypatch)
    assert new[1].parameters == {key: 1}


def test_numbers_elsewhere_are_given_back_as_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = list(range(N))
    body = orjson.dumps({"parameters": {"weights": weights},
                         "inputs": [{"name": "x", "datatype": "INT32", "shape": [N], "data": weights}]})
    assert _taken(body) == 2
    new, _ = _both(body, monkeypatch)
    assert new[1].parameters["weights"] == weights and type(new[1].parameters["weights"][0]) is int


def test_a_long_shape_is_still_reported_as_it_was_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    new, _ = _both(_body("FP32", [1] * N, b"[1.0]"), monkeypatch)
    assert "shape must be a list of at most" in new[1] and "[1, 1, 1" in new[1]


def test_rows_of_long_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [[float(i + j) for j in range(N // 4)] for i in range(4)]
    body = _body("FP32", [4, N // 4], orjson.dumps(rows))
    assert _taken(body) == 1  # one block, the rows and all
    new, _ = _both(body, monkeypatch)
    np.testing.assert_array_equal(new[1].inputs["x"], np.array(rows, dtype=np.float32))


@pytest.mark.parametrize(
    "shape", [[4, N // 4 + 1], [3, N // 4], [5, N // 4], [], [4], [N], [4, 0], [4, 2, N // 8], [4, 3, N // 8], [2, 2]]
)
@pytest.mark.parametrize("datatype", ["FP32", "INT64", "BOOL", "BYTES"])
@pytest.mark.parametrize("ragged", [False, True])
def test_rows_against_other_shapes(
    shape: list[int], datatype: str, ragged: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [[i + j for j in range(N // 4)] for i in range(4)]
    if ragged:
        rows[2].append(7)
    _both(_body(datatype, shape, orjson.dumps(rows)), monkeypatch)


def test_rows_mixing_long_and_short_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [[1.5] * N, [2.5] * 3]
    _both(_body("FP32", [2, N], orjson.dumps(rows)), monkeypatch)
    _both(_body("FP32", [2, N], orjson.dumps([[1.5] * N, [[2.5] * N]])), monkeypatch)


def test_a_string_that_looks_like_a_marker_is_just_a_string(monkeypatch: pytest.MonkeyPatch) -> None:
    forged = "\x00mest-0000000000000000-0"
    body = orjson.dumps({"id": forged, "inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [forged]},
                                                  {"name": "y", "datatype": "FP32", "shape": [N], "data": [1.5] * N}]})
    new, _ = _both(body, monkeypatch)
    assert new[1].id == forged and new[1].inputs["x"][0] == forged.encode()


def test_malformed_json_elsewhere_keeps_orjson_message(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _body("FP32", [N], _flat([1.5] * N)) + b"x"
    new, _ = _both(body, monkeypatch)
    assert new[1].startswith("Malformed JSON:")
    nan_elsewhere = _body("FP32", [N], _flat([1.5] * N), b',{"name":"y","datatype":"FP32","shape":[1],"data":[NaN]}')
    new, _ = _both(nan_elsewhere, monkeypatch)
    assert np.isnan(new[1].inputs["y"][0])


def test_random_corruptions_give_the_same_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(12)
    base = _body("FP32", [N], _flat([rng.choice([0, 1.5, -2, 3e-5, 10]) for _ in range(N)]))
    alphabet = b'0123456789-+.eE, \n[]"NaIfinty\\{}:x'
    for _ in range(60):
        body = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(60, len(body) - 10)
            body[position : position + rng.randint(0, 2)] = bytes([rng.choice(alphabet)])
        _both(bytes(body), monkeypatch)


def test_peak_memory_of_a_flat_list_of_floats_is_bounded() -> None:
    count = 2**19
    body = _body("INT64", [count], b"[" + b"1.0," * (count - 1) + b"1.0]")
    tracemalloc.start()
    try:
        decode_request(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < mest_json.MAX_PARSED_RATIO * len(body)


def _nested(dims: list[int]) -> Any:
    array = (np.arange(int(np.prod(dims))) % 7 - 3).reshape(dims) * 0.5
    return array.tolist()


@pytest.mark.parametrize("dims", [[N // 4, 4], [N // 12, 4, 3], [2, N // 24, 4, 3], [1, N], [N, 1]])
@pytest.mark.parametrize("indent", [False, True])
def test_nested_rectangular_data_of_any_depth(dims: list[int], indent: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _nested(dims)
    text = stdlib_json.dumps(data, indent=1 if indent else None).encode()
    body = _body("FP32", dims, text)
    assert _taken(body) == 1
    new, _ = _both(body, monkeypatch)
    np.testing.assert_array_equal(new[1].inputs["x"], np.array(data, dtype=np.float32))
    for other in ([dims[0] + 1, *dims[1:]], [*dims[:-1], dims[-1] + 1], [int(np.prod(dims))], dims[::-1], [],
                  [*dims, 1], [dims[0], 0, *dims[2:]]):
        for datatype in ("FP32", "INT64", "BOOL", "BYTES"):
            _both(_body(datatype, other, text), monkeypatch)


@pytest.mark.parametrize(
    "broken",
    [lambda t: t.replace(b"],[", b"],[1,", 1), lambda t: t.replace(b"],[", b"],", 1),
     lambda t: t.replace(b"]],[[", b"],[", 1), lambda t: t.replace(b"],[", b"][", 1), lambda t: t + b"]",
     lambda t: t[:-1], lambda t: b"[" + t, lambda t: t.replace(b",", b"],[", 1), lambda t: t.replace(b"[", b"[[", 1),
     lambda t: t.replace(b"],[", b"],[[]],[", 1)],
)
def test_ragged_or_broken_nesting_is_what_orjson_makes_of_it(broken: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    dims = [N // 12, 4, 3]
    text = broken(orjson.dumps(_nested(dims)))
    for datatype in ("FP32", "INT64"):
        _both(_body(datatype, dims, text), monkeypatch)


def test_peak_memory_of_short_rows_is_bounded() -> None:
    rows = 2**16
    body = _body("FP32", [rows, 4], b"[" + b"[1.0,2.0,3.0,4.0]," * (rows - 1) + b"[1.0,2.0,3.0,4.0]]")
    tracemalloc.start()
    try:
        decode_request(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < mest_json.MAX_PARSED_RATIO * len(body)


@pytest.mark.parametrize(
    "text",
    [b"[" + b"1.0, " * N + b" " * 100_000 + b"]", b"[ \n" + b" " * 100_000 + b"1.0" + b",1.0" * N + b"]",
     b"[" + b" " * 100_000 + b"]", b"[" + b"[" * 40 + b"1.0," * N + b"1.0" + b"]" * 40 + b"]",
     b"[" + b"[ " * 3000 + b"1.0," * N + b"1.0" + b" ]" * 3000 + b"]"],
)
def test_padding_and_depth_beyond_any_tensor(text: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    for shape in ([N + 1], [1] * 41 + [N + 1]):
        _both(_body("FP32", shape, text), monkeypatch)
