"""V2 JSON inputs whose layout cannot fill their shape are refused before numpy builds anything from them,
and integral floats for integer datatypes are converted without a Python object per element (issue: such
bodies cost up to 35 times their size; measured in bench/v2_json_cost.py)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from mest.codecs.v2 import decode_request
from mest.errors import BadRequest


def _decode(datatype: str, shape: list[int], data: object) -> np.ndarray:
    doc = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    return decode_request(orjson.dumps(doc)).inputs["x"]


def test_empty_rows_against_a_smaller_shape_are_refused_by_their_count() -> None:
    with pytest.raises(BadRequest, match=r"dimension 0 should have 1000 items"):
        _decode("FP32", [1000, 0], [[]] * 10_000)


def test_empty_rows_matching_the_shape_decode_to_an_empty_array() -> None:
    array = _decode("FP32", [1000, 0], [[]] * 1000)
    assert array.shape == (1000, 0) and array.dtype == np.float32


def test_more_rows_than_the_shape_are_refused() -> None:
    with pytest.raises(BadRequest, match=r"shape \[1000, 4\].*dimension 0 should have 1000 items"):
        _decode("FP32", [1000, 4], [[1.0, 2.0, 3.0, 4.0]] * 2000)


def test_a_short_inner_row_is_refused_naming_its_dimension() -> None:
    with pytest.raises(BadRequest, match=r"flat or rectangular.*dimension 2 should have 3 items"):
        _decode("INT32", [2, 2, 3], [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11]]])


def test_nested_data_matching_the_shape_decodes_in_row_major_order() -> None:
    array = _decode("INT32", [2, 2, 3], [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]])
    np.testing.assert_array_equal(array, np.arange(1, 13, dtype=np.int32).reshape(2, 2, 3))


def test_integral_floats_for_int64_convert_exactly() -> None:
    values = [1.0, -2.0, 2.0**52, -(2.0**53)]
    array = _decode("INT64", [4], values)
    assert array.dtype == np.int64
    assert array.tolist() == [1, -2, 2**52, -(2**53)]


@pytest.mark.parametrize("value", [1.5, -0.25])
def test_fractional_floats_for_int64_are_refused(value: float) -> None:
    with pytest.raises(BadRequest, match="INT64 data must be integers"):
        _decode("INT64", [2], [1.0, value])


def test_integral_floats_out_of_range_are_refused() -> None:
    with pytest.raises(BadRequest, match="out of the range of INT8"):
        _decode("INT8", [2], [1.0, 300.0])


def test_integers_beyond_float64_precision_stay_exact() -> None:
    array = _decode("UINT64", [2], [0, 2**64 - 1])
    assert array.tolist() == [0, 2**64 - 1]


@pytest.mark.parametrize("body", [b"[" + b"[]," * 100_000 + b"[]]", b"[" + b"{}," * 100_000 + b"{}]"])
def test_a_large_body_dense_in_arrays_or_objects_is_refused_before_it_is_parsed(body: bytes) -> None:
    from mest.codecs import json

    with pytest.raises(BadRequest, match="arrays and objects"):
        json.loads(body)


def test_large_bodies_of_flat_or_row_data_parse() -> None:
    from mest.codecs import json

    rows = [[5.1, 3.5, 1.4, 0.2]] * 20_000
    assert json.loads(orjson.dumps({"features": rows}))["features"] == rows
    flat = list(range(50_000))
    assert json.loads(orjson.dumps(flat)) == flat
