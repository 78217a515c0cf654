"""The V2 codec and tensor declarations, without HTTP: every datatype both ways, checked against tritonclient's
own (de)serializers so "compatible" means compatible with the standard client, not with ourselves."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from tritonclient.http import InferResult
from tritonclient.utils import deserialize_bytes_tensor, np_to_triton_dtype, serialize_byte_tensor

from mest.codecs import json
from mest.codecs.v2 import InferenceRequest, RequestedOutput, decode_request, encode_response, outputs_from_result
from mest.errors import BadRequest, InferenceError
from mest.tensors import DATATYPES, MAX_DIMS, TensorSpec, datatype_of, element_count, shape_matches

# One sample per V2 datatype, with values at the edges of each type's range.
SAMPLES: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 1, 255]], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-(2**15), 2**15 - 1], dtype=np.int16),
    "INT32": np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -2.25, 65504.0], dtype=np.float16),
    "FP32": np.array([[1.5, -0.25], [3.0e38, 1e-30]], dtype=np.float32),
    "FP64": np.array([np.pi, -1e300, 5e-324]),
    "BYTES": np.array([[b"", b"abc"], [b"\x00\xff", "é".encode()]], dtype=object),
}


def json_body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc)


def binary_body(doc: dict[str, Any], *chunks: bytes) -> tuple[bytes, int]:
    header = json.dumps(doc)
    return header + b"".join(chunks), len(header)


def raw_bytes(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    """An array as the binary extension carries it, made by tritonclient's serializer for BYTES."""
    if datatype == "BYTES":
        return bytes(serialize_byte_tensor(array).item())
    return array.astype(DATATYPES[datatype]).tobytes()


# -- tensors ---------------------------------------------------------------------------------------------


def test_datatype_table_agrees_with_tritonclient() -> None:
    for datatype, dtype in DATATYPES.items():
        assert np_to_triton_dtype(dtype) == datatype
        assert datatype_of(dtype) == datatype


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [(np.dtype("U3"), "BYTES"), (np.dtype("S2"), "BYTES"), (np.dtype(">i4"), "INT32"), (np.dtype(np.intp), "INT64")],
)
def test_datatype_of_strings_and_byte_orders(dtype: np.dtype[Any], datatype: str) -> None:
    assert datatype_of(dtype) == datatype


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, "datetime64[s]", "timedelta64[s]", "V4"])
def test_datatype_of_what_v2_cannot_carry(dtype: Any) -> None:
    assert datatype_of(np.dtype(dtype)) is None


def test_tensor_spec() -> None:
    spec = TensorSpec("features", "FP32", [-1, 4])
    assert spec.shape == (-1, 4)
    assert spec.dtype == np.float32
    assert spec.to_dict() == {"name": "features", "datatype": "FP32", "shape": [-1, 4]}
    assert spec.accepts([1, 4]) and spec.accepts((1000, 4))
    assert not spec.accepts([1, 3]) and not spec.accepts([4]) and not spec.accepts([1, 4, 1])
    assert spec == TensorSpec("features", "FP32", (-1, 4)) and hash(spec) == hash(
        TensorSpec("features", "FP32", (-1, 4))
    )
    assert TensorSpec("scalar", "BYTES", []).accepts(())
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "FP32", [1]), "non-empty string"),
        (("x", "fp32", [1]), "unknown datatype 'fp32'"),
        (("x", "FLOAT32", [1]), "unknown datatype"),
        (("x", "FP32", "1"), "list of integers"),
        (("x", "FP32", 3), "list of integers"),
        (("x", "FP32", [-2]), "-1 for any size"),
        (("x", "FP32", [1.0]), "-1 for any size"),
        (("x", "FP32", [True]), "-1 for any size"),
        (("x", "FP32", [1] * (MAX_DIMS + 1)), "at most"),
    ],
)
def test_tensor_spec_rejects(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TensorSpec(*args)


def test_shape_helpers() -> None:
    assert element_count([10**12, 10**12]) == 10**24  # Python integers: no overflow
    assert element_count([]) == 1
    assert shape_matches([-1, -1], [0, 7])
    assert not shape_matches([2], [3])


# -- decoding --------------------------------------------------------------------------------------------


def _json_data(array: np.ndarray[Any, Any], datatype: str) -> list[Any]:
    if datatype == "BYTES":
        return [item.decode("utf-8", "surrogateescape") for item in array.reshape(-1).tolist()]
    return array.reshape(-1).tolist()


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
def test_decode_json_every_numeric_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    doc = {
        "inputs": [
            {"name": "t", "datatype": datatype, "shape": list(sample.shape), "data": _json_data(sample, datatype)}
        ]
    }
    array = decode_request(json_body(doc)).inputs["t"]
    assert array.dtype == DATATYPES[datatype]
    assert array.shape == sample.shape
    np.testing.assert_array_equal(array, sample)
    assert array.flags.writeable


def test_decode_json_bytes_are_utf8_encoded_strings() -> None:
    doc = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2, 1], "data": ["hé", ""]}]}
    array = decode_request(json_body(doc)).inputs["s"]
    assert array.dtype == object and array.shape == (2, 1)
    assert array.reshape(-1).tolist() == ["hé".encode(), b""]


def test_decode_json_nested_and_flat_data_are_the_same() -> None:
    flat = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    nested = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
    np.testing.assert_array_equal(decode_request(json_body(flat)).inputs["x"], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(decode_request(json_body(nested)).inputs["x"], [[1, 2], [3, 4]])


def test_decode_json_coercions_that_lose_nothing() -> None:
    doc = {
        "inputs": [
            {"name": "i", "datatype": "INT16", "shape": [2], "data": [1.0, -3.0]},  # integral floats
            {"name": "f", "datatype": "FP16", "shape": [2], "data": [1, 1e10]},  # ints; beyond FP16 is inf
            {"name": "e", "datatype": "FP32", "shape": [0, 3], "data": []},
            {"name": "b", "datatype": "BOOL", "shape": [], "data": True},
        ]
    }
    inputs = decode_request(json_body(doc)).inputs
    assert inputs["i"].dtype == np.int16 and inputs["i"].tolist() == [1, -3]
    assert inputs["f"].dtype == np.float16 and inputs["f"][0] == 1 and np.isinf(inputs["f"][1])
    assert inputs["e"].shape == (0, 3) and inputs["e"].dtype == np.float32
    assert inputs["b"].shape == () and inputs["b"].dtype == np.bool_ and bool(inputs["b"]) is True


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_decode_binary_every_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    raw = raw_bytes(sample, datatype)
    body, length = binary_body(
        {
            "inputs": [
                {
                    "name": "t",
                    "datatype": datatype,
                    "shape": list(sample.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        },
        raw,
    )
    array = decode_request(body, length).inputs["t"]
    assert array.shape == sample.shape
    assert array.dtype == (np.dtype(object) if datatype == "BYTES" else DATATYPES[datatype])
    np.testing.assert_array_equal(array, sample)
    assert array.flags.writeable  # a copy, not a read-only view of the request body
    if datatype != "BYTES":
        array.reshape(-1)[0] = array.reshape(-1)[-1]


def test_decode_mixed_json_and_binary_inputs_in_order() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([b"x", b"yz"], dtype=object)
    raw_a, raw_b = raw_bytes(a, "FP32"), raw_bytes(b, "BYTES")
    body, length = binary_body(
        {
            "id": "r1",
            "parameters": {"binary_data_output": True, "threshold": 0.5},
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": len(raw_a)}},
                {"name": "j", "datatype": "INT8", "shape": [1], "data": [7]},
                {"name": "b", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw_b)}},
            ],
            "outputs": [{"name": "o1"}, {"name": "o2", "parameters": {"binary_data": False}}],
        },
        raw_a,
        raw_b,
    )
    request = decode_request(body, length)
    assert list(request.inputs) == ["a", "j", "b"]
    np.testing.assert_array_equal(request.inputs["a"], a)
    np.testing.assert_array_equal(request.inputs["b"], b)
    assert request.inputs["j"].tolist() == [7]
    assert request.id == "r1"
    assert request.parameters == {"binary_data_output": True, "threshold": 0.5}
    assert request.binary_output is True
    assert request.outputs == [RequestedOutput("o1", None), RequestedOutput("o2", False)]


def test_decode_checks_declarations() -> None:
    specs = [TensorSpec("x", "FP32", [-1, 2]), TensorSpec("mask", "BOOL", [-1])]
    doc = {
        "inputs": [
            {"name": "mask", "datatype": "BOOL", "shape": [1], "data": [True]},
            {"name": "x", "datatype": "FP32", "shape": [3, 2], "data": [0] * 6},
        ]
    }
    request = decode_request(json_body(doc), inputs=specs, outputs=[TensorSpec("y", "FP32", [-1])])
    assert request.inputs["x"].shape == (3, 2)
    with pytest.raises(BadRequest, match="Missing input 'x'"):
        decode_request(json_body({"inputs": doc["inputs"][:1]}), inputs=specs)
    with pytest.raises(BadRequest, match="Unknown output 'z'"):
        decode_request(
            json_body({**doc, "outputs": [{"name": "z"}]}), inputs=specs, outputs=[TensorSpec("y", "FP32", [-1])]
        )


def test_huge_declared_shapes_are_refused_without_allocating() -> None:
    # A terabyte-sized claim backed by four bytes: refused from the sizes alone, in either encoding.
    claim = {"name": "x", "datatype": "FP32", "shape": [10**6, 10**6]}
    with pytest.raises(BadRequest, match=r"Input 'x': shape \[1000000, 1000000\] holds 1000000000000 elements"):
        decode_request(json_body({"inputs": [{**claim, "data": [1.0]}]}))
    body, length = binary_body({"inputs": [{**claim, "parameters": {"binary_data_size": 4}}]}, b"\x00" * 4)
    with pytest.raises(BadRequest, match="needs 4000000000000 bytes, but binary_data_size is 4"):
        decode_request(body, length)
    body, length = binary_body(
        {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [10**9], "parameters": {"binary_data_size": 4}}]},
        struct.pack("<I", 0),
    )
    with pytest.raises(BadRequest, match="more than binary_data_size 4 can hold"):
        decode_request(body, length)


# -- outputs and encoding --------------------------------------------------------------------------------


def test_outputs_from_a_dict_describe_themselves() -> None:
    outputs = outputs_from_result(
        {"p": np.array([0.1, 0.9]), "label": ["setosa", "virginica"], "n": 3, "ok": [True], "raw": b"\x00"}
    )
    assert {name: (datatype_of(a.dtype), a.shape) for name, a in outputs.items()} == {
        "p": ("FP64", (2,)),
        "label": ("BYTES", (2,)),
        "n": ("INT64", ()),
        "ok": ("BOOL", (1,)),
        "raw": ("BYTES", ()),
    }
    assert outputs["label"].tolist() == [b"setosa", b"virginica"]


def test_a_pydantic_style_model_is_the_mapping_of_its_fields() -> None:
    class Result:  # what a response_schema's pydantic model offers, without needing pydantic here
        def model_dump(self) -> dict[str, Any]:
            return {"label": "setosa", "scores": [0.9, 0.1]}

    outputs = outputs_from_result(Result())
    assert outputs["label"].tolist() == b"setosa" and outputs["scores"].tolist() == [0.9, 0.1]


def test_single_value_is_the_single_declared_output_or_output0() -> None:
    assert list(outputs_from_result([1.0, 2.0], [TensorSpec("score", "FP64", [-1])])) == ["score"]
    assert list(outputs_from_result(np.zeros(3))) == ["output0"]
    with pytest.raises(InferenceError, match="declares 2 outputs"):
        outputs_from_result([1.0], [TensorSpec("a", "FP64", [-1]), TensorSpec("b", "FP64", [-1])])


def test_declared_outputs_convert_and_check() -> None:
    declared = [TensorSpec("y", "FP32", [-1, 2])]
    y = outputs_from_result({"y": np.ones((3, 2))}, declared)["y"]
    assert y.dtype == np.float32 and y.shape == (3, 2)
    with pytest.raises(
        InferenceError, match=r"Output 'y' has shape \[2\], which does not match the declared \[-1, 2\]"
    ):
        outputs_from_result({"y": [1.0, 2.0]}, declared)
    with pytest.raises(InferenceError, match="Output 'y' is BYTES"):
        outputs_from_result({"y": np.array([["a", "b"]])}, declared)
    with pytest.raises(InferenceError, match="cannot be safely sent"):
        outputs_from_result({"y": np.ones((1, 2))}, [TensorSpec("y", "INT32", [-1, 2])])
    with pytest.raises(InferenceError, match="does not declare"):
        outputs_from_result({"z": 1}, declared)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "element of type NoneType"),
        ([1, None], "element of type int"),
        ({"nested": 1}, "element of type dict"),
        (np.array([1j]), "complex128, which no V2 datatype carries"),
        ([[1, 2], [3]], "cannot be converted to an array"),
    ],
)
def test_outputs_v2_cannot_carry(value: Any, message: str) -> None:
    with pytest.raises(InferenceError, match=f"Output 'bad'.*{message}"):
        outputs_from_result({"bad": value})


def test_output_names_must_be_strings() -> None:
    with pytest.raises(InferenceError, match="must be strings"):
        outputs_from_result({1: [1]})


@pytest.mark.parametrize("binary", [False, True])
def test_encode_every_datatype_reads_back_with_tritonclient(binary: bool) -> None:
    outputs = outputs_from_result(SAMPLES)
    request = InferenceRequest(inputs={}, id="req-7", binary_output=binary)
    if not binary:  # JSON can only carry BYTES that are UTF-8 text
        outputs["BYTES"] = outputs_from_result({"s": [["a", "b"], ["é", ""]]})["s"]
    body, length = encode_response(request, outputs, model_name="m", model_version="3")
    if binary:
        assert length is not None and length < len(body)
    else:
        assert length is None
    result = InferResult.from_response_body(body, header_length=length)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("m", "3", "req-7")
    for name, expected in outputs.items():
        got = result.as_numpy(name)
        assert got is not None and got.shape == expected.shape, name
        assert result.get_output(name)["datatype"] == name
        if name == "BYTES" and not binary:
            assert got.reshape(-1).tolist() == ["a", "b", "é", ""]  # tritonclient gives JSON BYTES as str
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_encode_selects_and_orders_requested_outputs() -> None:
    outputs = outputs_from_result({"a": [1], "b": [2.0], "c": ["x"]})
    request = InferenceRequest(
        inputs={}, binary_output=True, outputs=[RequestedOutput("c", False), RequestedOutput("a")]
    )
    body, length = encode_response(request, outputs, model_name="m")
    header = json.loads(body[:length])
    assert "model_version" not in header and "id" not in header
    assert [o["name"] for o in header["outputs"]] == ["c", "a"]
    assert header["outputs"][0]["data"] == ["x"]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 8}
    assert body[length:] == np.array([1], dtype="<i8").tobytes()
    with pytest.raises(BadRequest, match="Unknown output 'zz': the model returned 'a', 'b', 'c'"):
        encode_response(InferenceRequest(inputs={}, outputs=[RequestedOutput("zz")]), outputs, model_name="m")


def test_encode_refuses_non_utf8_bytes_as_json() -> None:
    outputs = outputs_from_result({"raw": np.array([b"\xff"], dtype=object)})
    with pytest.raises(BadRequest, match="request it as binary data"):
        encode_response(InferenceRequest(inputs={}), outputs, model_name="m")
    body, length = encode_response(InferenceRequest(inputs={}, binary_output=True), outputs, model_name="m")
    assert deserialize_bytes_tensor(body[length:]).tolist() == [b"\xff"]
