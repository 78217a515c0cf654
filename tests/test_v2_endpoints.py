"""The Open Inference Protocol endpoints through the public TestClient, once per web-framework adapter.

``BAD_REQUESTS`` lists every kind of bad input with the status and the message it must get; it runs here
in-process and, in test_v2_tritonclient.py, against real gunicorn workers.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from apps.v2_app import MAX_BODY_SIZE, BrokenSetup, Echo, MyPredictor, register_models
from mest import Mest
from mest.api import Request, Response
from mest.codecs import json
from mest.predictors import PredictorBase
from mest.tensors import TensorSpec
from mest.testing import Result, TestClient

MakeApp = Callable[..., Mest]
SECRET = "/secret/weights/model.bin"
IRIS_FEATURES = [[5.1, 3.5, 1.4, 0.2]]


def binary(doc: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    """A body with binary tensor data after the JSON header, and the header that says where it starts."""
    header = json.dumps(doc)
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def tensor(name: str, datatype: str, shape: list[int], data: Any = None, **parameters: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if data is not None:
        entry["data"] = data
    if parameters:
        entry["parameters"] = parameters
    return entry


def infer_doc(*inputs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **fields}


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _case(model: str, body: Any, status: int, fragment: str, *, headers: dict[str, str] | None = None, id: str) -> Any:
    if isinstance(body, tuple):  # (body, headers) from binary()
        body, extra = body
        headers = {**extra, **(headers or {})}
    elif not isinstance(body, bytes):
        body = json.dumps(body)
    return pytest.param(model, body, headers or {}, status, fragment, id=id)


_GZIP_BOMB = gzip.compress(b"\0" * (MAX_BODY_SIZE + 1))

#: (model, body, headers, status, fragment of the error message): every kind of bad input, one request each.
BAD_REQUESTS = [
    # Not an inference request at all.
    _case("echo", b"{not json", 400, "Malformed JSON", id="malformed-json"),
    _case("echo", b"", 400, "body is empty", id="empty-body"),
    _case("echo", b"[1, 2]", 400, "must be a JSON object", id="not-an-object"),
    _case("echo", {}, 400, "needs 'inputs'", id="no-inputs"),
    _case("echo", {"inputs": {"a": 1}}, 400, "needs 'inputs'", id="inputs-not-a-list"),
    _case(
        "echo", infer_doc({"datatype": "FP32", "shape": [1], "data": [1]}), 400, "inputs[0]", id="input-without-name"
    ),
    _case("echo", infer_doc("a"), 400, "inputs[0]", id="input-not-an-object"),
    _case("echo", {"id": 5, "inputs": []}, 400, "'id' must be a string", id="id-not-a-string"),
    _case("echo", {"parameters": [], "inputs": []}, 400, "'parameters' must be an object", id="parameters-not-object"),
    _case(
        "echo",
        {"parameters": {"binary_data_output": "yes"}, "inputs": []},
        400,
        "binary_data_output",
        id="binary-data-output-not-bool",
    ),
    # Datatypes and shapes.
    _case(
        "echo",
        infer_doc(tensor("a", "FLOAT32", [1], [1])),
        400,
        "Input 'a': unknown datatype 'FLOAT32'",
        id="unknown-datatype",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "fp32", [1], [1])),
        400,
        "Input 'a': unknown datatype 'fp32'",
        id="datatype-is-case-sensitive",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "BF32", [1], [1])),
        400,
        "Input 'a': unknown datatype 'BF32'",
        id="unknown-datatype",
    ),
    _case(
        "echo",
        infer_doc({"name": "a", "datatype": ["FP32"], "shape": [1], "data": [1]}),
        400,
        "Input 'a': unknown datatype",
        id="datatype-not-a-string",
    ),
    _case(
        "echo",
        infer_doc({"name": "a", "datatype": "FP32", "shape": "2", "data": [1, 2]}),
        400,
        "Input 'a': shape must be",
        id="shape-not-a-list",
    ),
    _case("echo", infer_doc(tensor("a", "FP32", [-1], [1])), 400, "Input 'a': shape must be", id="shape-negative"),
    _case("echo", infer_doc(tensor("a", "FP32", [True], [1])), 400, "Input 'a': shape must be", id="shape-bool"),
    _case("echo", infer_doc(tensor("a", "FP32", [1.0], [1])), 400, "Input 'a': shape must be", id="shape-float"),
    _case(
        "echo", infer_doc(tensor("a", "FP32", [1] * 33, [1])), 400, "Input 'a': shape must be", id="shape-too-many-dims"
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [2**63], [1])),
        400,
        "Input 'a': shape must be",
        id="shape-dim-beyond-int64",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [10**6, 10**6], [1.0])),
        400,
        "Input 'a': shape [1000000, 1000000] holds 1000000000000 elements, but the data has 1",
        id="huge-shape-json",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [0, 2**62], [])),
        400,
        "Input 'a': shape [0, 4611686018427387904] is too large",
        id="huge-empty-shape",
    ),
    # JSON data against the shape and datatype.
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [2, 2], [1, 2, 3])),
        400,
        "Input 'a': shape [2, 2] holds 4 elements, but the data has 3",
        id="data-shorter-than-shape",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "INT8", [2], [1, 2, 3])),
        400,
        "Input 'a': shape [2] holds 2 elements, but the data has 3",
        id="data-longer-than-shape",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [2, 2], [[1, 2], [3]])),
        400,
        "Input 'a': data must be a flat or rectangular",
        id="data-ragged",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [2], ["1.5", "2"])),
        400,
        "Input 'a': FP32 data must be numbers",
        id="data-strings-for-fp32",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP64", [2], [1, None])),
        400,
        "Input 'a': FP64 data must be numbers",
        id="data-null",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [2], [1, {"v": 2}])),
        400,
        "Input 'a': FP32 data must be numbers",
        id="data-object",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [2], [True, False])),
        400,
        "Input 'a': FP32 data must be numbers",
        id="data-bools-for-fp32",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "INT32", [2], [1, 2.5])),
        400,
        "Input 'a': INT32 data must be integers",
        id="data-fraction-for-int",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "INT32", [2], ["x", 1])),
        400,
        "Input 'a': INT32 data must be numbers",
        id="data-string-for-int",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "UINT8", [2], [1, 256])),
        400,
        "Input 'a': a value is out of the range of UINT8",
        id="data-overflows-uint8",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "UINT32", [1], [-1])),
        400,
        "Input 'a': a value is out of the range of UINT32",
        id="data-negative-for-uint",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "INT64", [1], [2**63])),
        400,
        "Input 'a': a value is out of the range of INT64",
        id="data-overflows-int64",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "INT64", [2], [-1, 2**64 - 1])),
        400,
        "Input 'a': a value is out of the range of INT64",
        id="data-mixed-overflows-int64",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "BOOL", [2], [1, 0])),
        400,
        "Input 'a': BOOL data must be true or false",
        id="data-ints-for-bool",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "BYTES", [2], ["x", 1])),
        400,
        "Input 'a': BYTES data must be a list of strings",
        id="data-number-for-bytes",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1]), tensor("a", "FP32", [1], [2])),
        400,
        "Input 'a' is sent twice",
        id="input-twice",
    ),
    _case("echo", infer_doc(tensor("a", "FP32", [1])), 400, "Input 'a' has no data", id="input-without-data"),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1], shared_memory_region="r")),
        400,
        "Input 'a': shared memory is not supported",
        id="shared-memory",
    ),
    # Binary tensor data.
    _case(
        "echo",
        binary(infer_doc(tensor("a", "FP32", [2], binary_data_size=8)), b"\0" * 4),
        400,
        "Input 'a': binary_data_size 8 points past the end of the body",
        id="binary-size-past-body",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [2], binary_data_size=8)),
        400,
        "Input 'a': binary_data_size 8 points past the end",
        id="binary-size-without-binary-body",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("a", "FP32", [2], binary_data_size=16)), b"\0" * 16),
        400,
        "Input 'a': shape [2] of FP32 needs 8 bytes, but binary_data_size is 16",
        id="binary-size-not-shape",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("a", "FP32", [10**6, 10**6], binary_data_size=4)), b"\0" * 4),
        400,
        "Input 'a': shape [1000000, 1000000] of FP32 needs 4000000000000 bytes",
        id="huge-shape-binary",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("a", "FP32", [1], binary_data_size=-4)), b"\0" * 4),
        400,
        "Input 'a': binary_data_size must be a non-negative integer",
        id="binary-size-negative",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("a", "FP32", [1], binary_data_size="4")), b"\0" * 4),
        400,
        "Input 'a': binary_data_size must be a non-negative integer",
        id="binary-size-string",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("a", "FP32", [1], [1.0], binary_data_size=4)), b"\0" * 4),
        400,
        "Input 'a' has both 'data' and parameters.binary_data_size",
        id="binary-and-json-data",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("a", "FP32", [1], binary_data_size=4)), b"\0" * 6),
        400,
        "2 bytes of binary data that no input's binary_data_size accounts for",
        id="binary-trailing-bytes",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("a", "BOOL", [2], binary_data_size=2)), b"\x01\x02"),
        400,
        "Input 'a': BOOL binary data must be bytes of value 0 or 1",
        id="binary-bool-not-0-or-1",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("s", "BYTES", [10**9], binary_data_size=8)), b"\0" * 8),
        400,
        "Input 's': shape [1000000000] holds 1000000000 BYTES elements, more than binary_data_size 8",
        id="binary-bytes-huge-count",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("s", "BYTES", [1], binary_data_size=6)), _u32(100) + b"ab"),
        400,
        "Input 's': a BYTES element's length points past its binary data",
        id="binary-bytes-length-past-end",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("s", "BYTES", [2], binary_data_size=8)), _u32(1) + b"a" + b"xyz"),
        400,
        "Input 's': BYTES binary data ends inside an element's length",
        id="binary-bytes-cut-length",
    ),
    _case(
        "echo",
        binary(infer_doc(tensor("s", "BYTES", [1], binary_data_size=7)), _u32(1) + b"abc"),
        400,
        "Input 's': binary_data_size is 7, but its 1 BYTES elements use 5 bytes",
        id="binary-bytes-trailing",
    ),
    _case(
        "echo",
        (json.dumps(infer_doc(tensor("a", "FP32", [1], [1]))), {"Inference-Header-Content-Length": "9999"}),
        400,
        "Inference-Header-Content-Length is 9999, but the body has",
        id="header-length-past-body",
    ),
    _case(
        "echo",
        (json.dumps(infer_doc(tensor("a", "FP32", [1], [1]))), {"Inference-Header-Content-Length": "0"}),
        400,
        "Inference-Header-Content-Length is 0",
        id="header-length-zero",
    ),
    _case(
        "echo",
        (json.dumps(infer_doc(tensor("a", "FP32", [1], [1]))), {"Inference-Header-Content-Length": "-5"}),
        400,
        "Inference-Header-Content-Length must be a byte count",
        id="header-length-negative",
    ),
    _case(
        "echo",
        (json.dumps(infer_doc(tensor("a", "FP32", [1], [1]))), {"Inference-Header-Content-Length": "ten"}),
        400,
        "Inference-Header-Content-Length must be a byte count",
        id="header-length-not-a-number",
    ),
    _case(
        "echo",
        (json.dumps(infer_doc(tensor("a", "FP32", [1], [1]))), {"Inference-Header-Content-Length": "10"}),
        400,
        "Malformed JSON",
        id="header-length-inside-json",
    ),
    # Requested outputs.
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1]), outputs={"name": "a"}),
        400,
        "'outputs' must be a list",
        id="outputs-not-a-list",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1]), outputs=[{"name": 1}]),
        400,
        "outputs[0] must be an object",
        id="output-without-name",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1]), outputs=[{"name": "a"}, {"name": "a"}]),
        400,
        "Output 'a' is requested twice",
        id="output-twice",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1]), outputs=[{"name": "a", "parameters": {"binary_data": 1}}]),
        400,
        "Output 'a': parameters.binary_data must be true or false",
        id="output-binary-not-bool",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1]), outputs=[{"name": "a", "parameters": {"classification": 2}}]),
        400,
        "Output 'a': parameter 'classification' is not supported",
        id="output-classification",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1]), outputs=[{"name": "zz"}]),
        400,
        "Unknown output 'zz': the model returned 'a'",
        id="output-not-produced",
    ),
    # A BYTES output that is not UTF-8, asked for as JSON: the client is told to ask for binary data.
    _case(
        "echo",
        binary(
            infer_doc(
                tensor("a", "BYTES", [1], binary_data_size=5),
                outputs=[{"name": "a", "parameters": {"binary_data": False}}],
            ),
            _u32(1) + b"\xff",
        ),
        400,
        "Output 'a' holds bytes that are not UTF-8 text: request it as binary data",
        id="output-bytes-not-utf8-as-json",
    ),
    # Declared tensors (scaler: x FP32 [-1, 3] -> y, total).
    _case("scaler", infer_doc(), 400, "Missing input 'x': the model needs 'x'", id="declared-input-missing"),
    _case(
        "scaler",
        infer_doc(tensor("x", "FP32", [1, 3], [1, 2, 3]), tensor("z", "FP32", [1], [1])),
        400,
        "Unexpected input 'z': the model takes 'x'",
        id="undeclared-input",
    ),
    _case(
        "scaler",
        infer_doc(tensor("x", "FP64", [1, 3], [1, 2, 3])),
        400,
        "Input 'x': datatype FP64 does not match the declared FP32",
        id="declared-datatype",
    ),
    _case(
        "scaler",
        infer_doc(tensor("x", "FP32", [1, 4], [1, 2, 3, 4])),
        400,
        "Input 'x': shape [1, 4] does not match the declared [-1, 3]",
        id="declared-shape",
    ),
    _case(
        "scaler",
        infer_doc(tensor("x", "FP32", [3], [1, 2, 3])),
        400,
        "Input 'x': shape [3] does not match the declared [-1, 3]",
        id="declared-rank",
    ),
    _case(
        "scaler",
        infer_doc(tensor("x", "FP32", [1, 3], [1, 2, 3]), outputs=[{"name": "nope"}]),
        400,
        "Unknown output 'nope': the model returns 'y', 'total'",
        id="declared-output-unknown",
    ),
    # The seed's predictor, which knows nothing of V2, sent the wrong input name: its KeyError is a 400.
    _case(
        "iris",
        infer_doc(tensor("x", "FP32", [1, 4], [1, 2, 3, 4])),
        400,
        "missing key 'features'",
        id="seed-predictor-wrong-input",
    ),
    # HTTP framing: media type, compression, size.
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1])),
        415,
        "Unsupported content type 'text/plain'",
        headers={"Content-Type": "text/plain"},
        id="content-type",
    ),
    _case(
        "echo",
        infer_doc(tensor("a", "FP32", [1], [1])),
        415,
        "Unsupported Content-Encoding 'br'",
        headers={"Content-Encoding": "br"},
        id="content-encoding",
    ),
    _case(
        "echo", b"\x1f\x8b garbage", 400, "not valid gzip data", headers={"Content-Encoding": "gzip"}, id="gzip-garbage"
    ),
    _case(
        "echo",
        gzip.compress(b'{"inputs": []}')[:-12],
        400,
        "gzip body is truncated",
        headers={"Content-Encoding": "gzip"},
        id="gzip-truncated",
    ),
    _case(
        "echo",
        _GZIP_BOMB,
        413,
        f"decompressed body is larger than the limit of {MAX_BODY_SIZE} bytes",
        headers={"Content-Encoding": "gzip"},
        id="gzip-bomb",
    ),
    _case("echo", b"{" + b" " * MAX_BODY_SIZE + b"}", 413, "larger than the limit", id="body-too-large"),
]


def assert_v2_error(result: Result, status: int, fragment: str) -> str:
    """A V2 error: the status, and a JSON body whose ``error`` string (what V2 clients read) says why."""
    assert result.status_code == status, result.content[:300]
    assert result.headers["content-type"] == "application/json"
    message = result.json()["error"]
    assert isinstance(message, str)
    assert fragment in message, message
    return message


def good_request(client: TestClient) -> None:
    result = client.post("/v2/models/echo/infer", json=infer_doc(tensor("a", "INT8", [1], [5])))
    assert result.status_code == 200, result.content
    assert result.json()["outputs"][0]["data"] == [5]


@pytest.fixture
def app(make_app: MakeApp) -> Mest:
    return register_models(make_app(max_body_size=MAX_BODY_SIZE))


@pytest.fixture
def client(app: Mest) -> TestClient:
    return TestClient(app)


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "body", "headers", "status", "fragment"), BAD_REQUESTS)
def test_bad_input(
    client: TestClient, model: str, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    assert_v2_error(client.post(f"/v2/models/{model}/infer", content=body, headers=headers), status, fragment)
    good_request(client)


# -- server endpoints --------------------------------------------------------------------------------------


def test_server_metadata(client: TestClient) -> None:
    import mest

    result = client.get("/v2")
    assert result.status_code == 200
    assert result.json() == {
        "name": "mest", "version": mest.__version__, "extensions": ["binary_tensor_data", "statistics"]
    }


def test_server_health(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_not_ready_model(make_app: MakeApp) -> None:
    app = make_app()
    app.add_inference_handler(Echo(), "/echo", name="echo")
    app.add_inference_handler(BrokenSetup(), "/broken", name="broken", version="3")
    client = TestClient(app)
    assert client.get("/v2/health/live").status_code == 200
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 400  # the spec: 200 is ready, a 4xx is not
    assert ready.json() == {"ready": False, "error": "Not ready: the setup of 'broken' version '3' failed."}
    for path in ("/v2/models/broken/ready", "/v2/models/broken/versions/3/ready"):
        model = client.get(path)
        assert model.status_code == 400
        assert model.json()["ready"] is False and model.json()["name"] == "broken"
    assert client.get("/v2/models/echo/ready").json() == {"name": "echo", "ready": True}
    infer = client.post("/v2/models/broken/infer", json=infer_doc(tensor("a", "FP32", [1], [1])))
    assert_v2_error(infer, 503, "Model 'broken' version '3' is not ready: its setup failed.")
    assert SECRET not in ready.text + infer.text


# -- model endpoints ---------------------------------------------------------------------------------------


def test_every_model_gets_its_v2_routes(app: Mest) -> None:
    routes = set(app.routes())
    assert {("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready")} <= routes
    for base in (
        "/v2/models/iris",
        "/v2/models/scaler",
        "/v2/models/scaler/versions/1",
        "/v2/models/scaler/versions/2",
    ):
        assert {("GET", base), ("GET", base + "/ready"), ("POST", base + "/infer")} <= routes, base
    assert ("POST", "/api/v1/predict") in routes  # the predictor's own route is still there
    assert not any(path.startswith("/v2/models/iris/versions") for _, path in routes)


def test_model_metadata(client: TestClient) -> None:
    declared = {
        "name": "scaler",
        "versions": ["1", "2"],
        "platform": "mest",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "total", "datatype": "FP64", "shape": [-1]},
        ],
    }
    assert client.get("/v2/models/scaler").json() == declared
    assert client.get("/v2/models/scaler/versions/1").json() == declared
    assert client.get("/v2/models/iris").json() == {
        "name": "iris",
        "versions": [],
        "platform": "mest",
        "inputs": [],
        "outputs": [],
    }


def test_model_ready(client: TestClient) -> None:
    for path in ("/v2/models/iris/ready", "/v2/models/scaler/ready", "/v2/models/scaler/versions/2/ready"):
        result = client.get(path)
        assert result.status_code == 200
        assert result.json()["ready"] is True


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/v2/models/nope", "Request for unknown model: 'nope' is not found"),
        ("GET", "/v2/models/nope/ready", "Request for unknown model: 'nope' is not found"),
        ("POST", "/v2/models/nope/infer", "Request for unknown model: 'nope' is not found"),
        ("GET", "/v2/models/scaler/versions/9", "Request for unknown model: 'scaler' version 9 is not found"),
        ("GET", "/v2/models/scaler/versions/9/ready", "Request for unknown model: 'scaler' version 9 is not found"),
        ("POST", "/v2/models/scaler/versions/9/infer", "Request for unknown model: 'scaler' version 9 is not found"),
        ("POST", "/v2/models/iris/versions/1/infer", "Request for unknown model: 'iris' version 1 is not found"),
        ("GET", "/v2/models/scaler/nothing", "No V2 endpoint matches"),
    ],
)
def test_unknown_model_or_version_is_404(client: TestClient, method: str, path: str, message: str) -> None:
    result = client.request(method, path, json=infer_doc(tensor("a", "FP32", [1], [1])))
    assert_v2_error(result, 404, message)


def test_wrong_method_is_405(client: TestClient) -> None:
    result = client.get("/v2/models/scaler/infer")
    assert_v2_error(result, 405, "allowed: POST")
    assert result.headers["allow"] == "POST"


# -- inference ---------------------------------------------------------------------------------------------


def test_seed_predictor_answers_v2_as_on_its_own_route(client: TestClient) -> None:
    own = client.post("/api/v1/predict", json={"features": IRIS_FEATURES}).json()["probability"]
    v2 = client.post(
        "/v2/models/iris/infer", json=infer_doc(tensor("features", "FP64", [1, 4], IRIS_FEATURES), id="q1")
    )
    assert v2.status_code == 200
    assert v2.headers["content-type"] == "application/json"
    body = v2.json()
    assert body["model_name"] == "iris" and body["id"] == "q1" and "model_version" not in body
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probability", "FP64", [3])
    np.testing.assert_allclose(output["data"], own)
    assert own == pytest.approx(MyPredictor().model.predict_proba(IRIS_FEATURES)[0].tolist())


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("BOOL", [True, False]),
        ("UINT8", [0, 255]),
        ("UINT16", [0, 65535]),
        ("UINT32", [0, 2**32 - 1]),
        ("UINT64", [0, 2**64 - 1]),
        ("INT8", [-128, 127]),
        ("INT16", [-(2**15), 2**15 - 1]),
        ("INT32", [-(2**31), 2**31 - 1]),
        ("INT64", [-(2**63), 2**63 - 1]),
        ("FP16", [0.5, -65504.0]),
        ("FP32", [0.25, -1.5e38]),
        ("FP64", [1e-300, -2.5]),
        ("BYTES", ["", "hé"]),
    ],
)
def test_json_round_trip_every_datatype(client: TestClient, datatype: str, values: list[Any]) -> None:
    result = client.post("/v2/models/echo/infer", json=infer_doc(tensor("t", datatype, [2, 1], values)))
    assert result.status_code == 200, result.content
    assert result.json()["outputs"] == [{"name": "t", "datatype": datatype, "shape": [2, 1], "data": values}]


def test_binary_in_binary_out(client: TestClient) -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    body, headers = binary(
        infer_doc(tensor("x", "FP32", [4, 3], binary_data_size=x.nbytes), parameters={"binary_data_output": True}),
        x.tobytes(),
    )
    result = client.post("/v2/models/scaler/versions/2/infer", content=body, headers=headers)
    assert result.status_code == 200, result.content
    assert result.headers["content-type"] == "application/octet-stream"
    length = int(result.headers["inference-header-content-length"])
    header = json.loads(result.content[:length])
    assert header["model_version"] == "2"
    assert header["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [4, 3], "parameters": {"binary_data_size": 48}},
        {"name": "total", "datatype": "FP64", "shape": [4], "parameters": {"binary_data_size": 32}},
    ]
    data = result.content[length:]
    np.testing.assert_array_equal(np.frombuffer(data[:48], "<f4").reshape(4, 3), x * 2)
    np.testing.assert_array_equal(np.frombuffer(data[48:], "<f8"), (x * 2).sum(axis=1))


def test_outputs_filter_and_per_output_binary_flag(client: TestClient) -> None:
    doc = infer_doc(
        tensor("x", "FP32", [1, 3], [1, 2, 3]),
        parameters={"binary_data_output": True},
        outputs=[{"name": "total", "parameters": {"binary_data": False}}],
    )
    result = client.post("/v2/models/scaler/versions/1/infer", json=doc)
    assert "inference-header-content-length" not in result.headers
    assert result.json()["outputs"] == [{"name": "total", "datatype": "FP64", "shape": [1], "data": [6.0]}]


def test_parameters_reach_the_predictor(client: TestClient) -> None:
    doc = infer_doc(tensor("x", "FP32", [1, 3], [1, 2, 3]), parameters={"offset": 10}, outputs=[{"name": "y"}])
    result = client.post("/v2/models/scaler/versions/1/infer", json=doc)
    assert result.json()["outputs"][0]["data"] == [11.0, 12.0, 13.0]


def test_parameters_are_on_req_context(make_app: MakeApp) -> None:
    seen: list[Any] = []

    class Spy(PredictorBase):
        def pre_process(self, input_data: Any, req: Request) -> Any:
            seen.append((sorted(input_data), req.context["parameters"], req.path))
            return input_data

        def infer(self, processed_data: Any) -> Any:
            return processed_data

    app = make_app()
    app.add_inference_handler(Spy(), "/spy")
    client = TestClient(app)
    client.post(
        "/v2/models/spy/infer",
        json=infer_doc(tensor("b", "FP32", [1], [1]), tensor("a", "FP32", [1], [1]), parameters={"k": "v", "n": 2}),
    )
    client.post("/v2/models/spy/infer", json=infer_doc())
    assert seen == [(["a", "b"], {"k": "v", "n": 2}, "/v2/models/spy/infer"), ([], {}, "/v2/models/spy/infer")]


def test_request_id_is_echoed(client: TestClient) -> None:
    with_id = client.post("/v2/models/echo/infer", json=infer_doc(tensor("a", "INT8", [1], [1]), id="abc-1"))
    without = client.post("/v2/models/echo/infer", json=infer_doc(tensor("a", "INT8", [1], [1])))
    assert with_id.json()["id"] == "abc-1"
    assert "id" not in without.json()


def test_derived_outputs_and_batched_model(client: TestClient) -> None:
    parity = client.post("/v2/models/parity/infer", json=infer_doc(tensor("n", "INT64", [3], [1, 2, 4])))
    assert parity.json()["outputs"] == [
        {"name": "even", "datatype": "BOOL", "shape": [3], "data": [False, True, True]},
        {"name": "word", "datatype": "BYTES", "shape": [3], "data": ["odd", "even", "even"]},
    ]
    norm = client.post("/v2/models/norms/infer", json=infer_doc(tensor("x", "FP64", [2], [3, 4])))
    assert norm.json()["outputs"] == [{"name": "norm", "datatype": "FP64", "shape": [], "data": [5.0]}]


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_requests(client: TestClient, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    x = np.array([1, 2, 3], dtype=np.int16)
    body, headers = binary(infer_doc(tensor("a", "INT16", [3], binary_data_size=6)), x.tobytes())
    result = client.post(
        "/v2/models/echo/infer", content=compress(body), headers={**headers, "Content-Encoding": encoding}
    )
    assert result.status_code == 200, result.content
    assert result.json()["outputs"][0]["data"] == [1, 2, 3]


def test_default_version_rules(make_app: MakeApp) -> None:
    def served_version(registrations: list[str | None], later: str | None = None) -> str | None:
        app = make_app()
        for i, version in enumerate(registrations):
            app.add_inference_handler(Echo(), f"/m{i}", name="m", version=version)
        client = TestClient(app)
        doc = infer_doc(tensor("a", "INT8", [1], [1]))
        first = client.post("/v2/models/m/infer", json=doc).json().get("model_version")
        if later is None:
            return first
        app.add_inference_handler(Echo(), "/later", name="m", version=later)
        return client.post("/v2/models/m/infer", json=doc).json().get("model_version")

    assert served_version(["2", None, "7"]) is None  # the registration without a version
    assert served_version(["2", "10", "9"]) == "10"  # the highest number, not the last string
    assert served_version(["b", "a"]) == "a"  # not all numbers: the one registered last
    assert served_version(["1"], later="2") == "2"  # looked up per request


def test_post_process_response_is_sent_unchanged(make_app: MakeApp) -> None:
    class Custom(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return processed_data

        def post_process(self, prediction: Any, req: Request) -> Any:
            return Response("custom", status=202, headers={"X-Custom": "1"})

    app = make_app()
    app.add_inference_handler(Custom(), "/custom")
    result = TestClient(app).post("/v2/models/custom/infer", json=infer_doc())
    assert (result.status_code, result.text, result.headers["x-custom"]) == (202, "custom", "1")


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        ({"a": None}, "Output 'a' holds an element of type NoneType"),
        ({"z": np.array([1j])}, "Output 'z' has dtype complex128, which no V2 datatype carries"),
        (
            {"y": np.zeros((1, 4), dtype=np.float32)},
            "Output 'y' has shape [1, 4], which does not match the declared [-1, 3]",
        ),
        ({"q": [1.0]}, "post_process returned output 'q', which the model does not declare"),
    ],
)
def test_unsendable_outputs_are_500_naming_the_output(make_app: MakeApp, returned: Any, fragment: str) -> None:
    class Returns(PredictorBase):
        outputs = [TensorSpec("y", "FP32", [-1, 3])] if "y" in returned or "q" in returned else None

        def infer(self, processed_data: Any) -> Any:
            return returned

    app = make_app()
    app.add_inference_handler(Returns(), "/returns")
    result = TestClient(app).post("/v2/models/returns/infer", json=infer_doc())
    assert_v2_error(result, 500, fragment)


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        (["features"], TypeError, r"Bad.inputs must be a list of mest.tensors.TensorSpec(.|\n)*Correct usage"),
        (TensorSpec("x", "FP32", [1]), TypeError, "must be a list of mest.tensors.TensorSpec"),
        ([TensorSpec("x", "FP32", [1]), TensorSpec("x", "FP64", [1])], ValueError, "declares 'x' more than once"),
    ],
)
def test_bad_declarations_fail_at_registration(
    make_app: MakeApp, inputs: Any, error: type[Exception], message: str
) -> None:
    class Bad(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return processed_data

    Bad.inputs = inputs  # type: ignore[assignment]
    with pytest.raises(error, match=message):
        make_app().add_inference_handler(Bad(), "/bad")


def test_declared_predictor_still_serves_its_own_route(client: TestClient) -> None:
    own = client.post("/scaler/v2", json={"x": [[1, 2, 3]]})
    assert own.status_code == 200, own.content
    assert own.json() == {"y": [[2.0, 4.0, 6.0]], "total": [12.0]}


def test_non_finite_json_tokens_in_and_out_never_null() -> None:
    from apps.v2_app import register_models
    from mest import Mest
    from mest.testing import TestClient

    client = TestClient(register_models(Mest()))
    body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [4], "data": [NaN, Infinity, -Infinity, 1]}]}'
    response = client.post("/v2/models/echo/infer", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert b'"data":[NaN,Infinity,-Infinity,1.0]' in response.content
    assert b"null" not in response.content
    ints = body.replace(b"FP64", b"INT64")
    rejected = client.post("/v2/models/echo/infer", content=ints, headers={"Content-Type": "application/json"})
    assert rejected.status_code == 400
    assert "Input 'x': INT64 data must be integers" in rejected.json()["error"]


def test_bf16_without_ml_dtypes_is_a_400_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from apps.v2_app import register_models
    from mest import Mest
    from mest.testing import TestClient

    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # as if not installed
    client = TestClient(register_models(Mest()))
    header = b'{"inputs":[{"name":"h","datatype":"BF16","shape":[2],"parameters":{"binary_data_size":4}}]}'
    response = client.post(
        "/v2/models/echo/infer", content=header + b"\x00\x3f\x00\x40",
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "pip install 'mest[bf16]'" in response.json()["error"]
