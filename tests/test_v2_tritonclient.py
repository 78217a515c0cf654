"""The Open Inference Protocol on every real server Mest runs on (the dev server behind ``app.run()``, gunicorn's
sync, gthread and gevent workers, granian), driven by the standard client (tritonclient[http]).

No glue: the client is used exactly as against any V2 server. The raw-HTTP part replays every bad input of
test_v2_endpoints.py against the real workers and checks each one still answers afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import mest
from apps.v2_app import MyPredictor
from support.mest_serve import serve_on
from support.servers import RunningServer, gunicorn
from test_v2_endpoints import BAD_REQUESTS

pytestmark = pytest.mark.server

SERVERS = ["dev", "sync", "gthread", "gevent", "mest-granian"]
IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)

# One array per V2 datatype tritonclient can send from numpy, at the edges of each type's range.
ARRAYS: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([0, 7, 255], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 127], dtype=np.int8),
    "INT16": np.array([[-(2**15)], [2**15 - 1]], dtype=np.int16),
    "INT32": np.array([-(2**31), 2**31 - 1], dtype=np.int32),
    "INT64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -2.25, 65504.0], dtype=np.float16),
    "FP32": np.array([[1.5, -0.25], [3.0e38, 1e-30]], dtype=np.float32),
    "FP64": np.array([np.pi, -1e300]),
    "BYTES": np.array([b"", b"text", "h\u00e9".encode()], dtype=object),
}


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    # dev is app.run(): tritonclient sends no Content-Type, which wsgiref used to call text/plain.
    if request.param == "mest-granian":
        pytest.importorskip("granian")
    with serve_on(request.param, "v2_app") as server:
        yield server


@pytest.fixture
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        yield client
    finally:
        client.close()


def infer_input(name: str, array: np.ndarray[Any, Any], *, binary: bool) -> triton.InferInput:
    datatype = "BYTES" if array.dtype == object else triton.np_to_triton_dtype(array.dtype)
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("scaler")
    assert client.is_model_ready("scaler", "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready("scaler", "9")


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.get_server_metadata() == {
        "name": "mest",
        "version": mest.__version__,
        "extensions": ["binary_tensor_data", "statistics"],
    }


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("scaler")
    assert metadata == client.get_model_metadata("scaler", "2")
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert [o["name"] for o in metadata["outputs"]] == ["y", "total"]
    assert client.get_model_metadata("echo")["inputs"] == []


def test_unknown_model_is_an_error_the_client_raises(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as metadata_error:
        client.get_model_metadata("nope")
    assert metadata_error.value.status() == "404"
    assert "nope" in metadata_error.value.message()
    x = infer_input("x", np.zeros((1, 3), dtype=np.float32), binary=True)
    for model, version in (("nope", ""), ("scaler", "9")):
        with pytest.raises(InferenceServerException) as infer_error:
            client.infer(model, [x], model_version=version)
        assert infer_error.value.status() == "404"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_seed_predictor_answers_v2(client: triton.InferenceServerClient, binary: bool) -> None:
    expected = MyPredictor().model.predict_proba(IRIS[:1])[0]
    outputs = [triton.InferRequestedOutput("probability", binary_data=binary)]
    result = client.infer("iris", [infer_input("features", IRIS[:1], binary=binary)], outputs=outputs)
    probability = result.as_numpy("probability")
    assert probability.dtype == np.float64 and probability.shape == (3,)
    np.testing.assert_allclose(probability, expected)
    assert ("parameters" in result.get_output("probability")) is binary


@pytest.mark.parametrize("mode", ["json", "binary-in", "binary-out", "binary"])
def test_every_datatype_round_trips(client: triton.InferenceServerClient, mode: str) -> None:
    binary_in, binary_out = mode in ("binary", "binary-in"), mode in ("binary", "binary-out")
    inputs = [infer_input(datatype, array, binary=binary_in) for datatype, array in ARRAYS.items()]
    outputs = [triton.InferRequestedOutput(datatype, binary_data=binary_out) for datatype in ARRAYS]
    result = client.infer("echo", inputs, outputs=outputs, request_id=f"round-trip-{mode}")
    assert result.get_response()["id"] == f"round-trip-{mode}"
    for datatype, sent in ARRAYS.items():
        got = result.as_numpy(datatype)
        assert result.get_output(datatype)["datatype"] == datatype
        assert got.shape == sent.shape, datatype
        if datatype == "BYTES" and not binary_out:  # JSON carries text: tritonclient gives str
            sent = np.array([item.decode("utf-8") for item in sent], dtype=object)
        else:
            assert got.dtype == sent.dtype, datatype
        np.testing.assert_array_equal(got, sent, err_msg=datatype)


def test_large_tensor_in_binary_both_ways(client: triton.InferenceServerClient) -> None:
    big = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)  # 1 MiB
    result = client.infer("echo", [infer_input("big", big, binary=True)])  # no outputs: all binary
    assert "data" not in result.get_output("big")
    np.testing.assert_array_equal(result.as_numpy("big"), big)


def test_versions_parameters_and_output_selection(client: triton.InferenceServerClient) -> None:
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    v1 = client.infer("scaler", [infer_input("x", x, binary=False)], model_version="1")
    v2 = client.infer("scaler", [infer_input("x", x, binary=True)], model_version="2")
    default = client.infer("scaler", [infer_input("x", x, binary=True)])
    np.testing.assert_array_equal(v1.as_numpy("y"), x)
    np.testing.assert_array_equal(v2.as_numpy("y"), x * 2)
    assert v1.get_response()["model_version"] == "1"
    assert default.get_response()["model_version"] == "2"  # the highest version serves the bare name
    np.testing.assert_array_equal(default.as_numpy("total"), (x * 2).sum(axis=1).astype(np.float64))
    only_total = client.infer(
        "scaler",
        [infer_input("x", x, binary=True)],
        model_version="1",
        outputs=[triton.InferRequestedOutput("total", binary_data=False)],
        parameters={"offset": 1},
    )
    assert only_total.as_numpy("y") is None
    np.testing.assert_array_equal(only_total.as_numpy("total"), [9.0, 18.0])


def test_bool_and_text_outputs(client: triton.InferenceServerClient) -> None:
    result = client.infer("parity", [infer_input("n", np.array([3, 8], dtype=np.int64), binary=True)])
    assert result.as_numpy("even").tolist() == [False, True]
    assert result.as_numpy("word").tolist() == [b"odd", b"even"]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request(client: triton.InferenceServerClient, algorithm: str) -> None:
    x = np.arange(300, dtype=np.int32)
    result = client.infer("echo", [infer_input("x", x, binary=True)], request_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("x"), x)


def test_concurrent_requests_through_the_batched_model(client: triton.InferenceServerClient) -> None:
    vectors = [np.full(4, float(i)) for i in range(12)]
    pending = [client.async_infer("norms", [infer_input("x", v, binary=True)]) for v in vectors]
    norms = [p.get_result().as_numpy("norm") for p in pending]
    for vector, norm in zip(vectors, norms, strict=True):
        assert norm.shape == ()
        assert float(norm) == pytest.approx(np.linalg.norm(vector))


@pytest.mark.parametrize(
    ("model", "name", "array", "fragment"),
    [
        ("scaler", "x", np.zeros((1, 3)), "Input 'x': datatype FP64 does not match the declared FP32"),
        (
            "scaler",
            "x",
            np.zeros((2, 4), dtype=np.float32),
            "Input 'x': shape [2, 4] does not match the declared [-1, 3]",
        ),
        ("scaler", "w", np.zeros((1, 3), dtype=np.float32), "Unexpected input 'w'"),
        ("iris", "x", IRIS, "missing key 'features'"),
    ],
)
def test_bad_input_is_raised_by_the_client(
    client: triton.InferenceServerClient, model: str, name: str, array: np.ndarray[Any, Any], fragment: str
) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer(model, [infer_input(name, array, binary=True)])
    assert error.value.status() == "400"
    assert fragment in error.value.message()


def test_every_bad_input_over_raw_http(server: RunningServer, client: triton.InferenceServerClient) -> None:
    with server.client() as http:
        for case in BAD_REQUESTS:
            model, body, headers, status, fragment = case.values
            response = http.post(f"/v2/models/{model}/infer", content=body, headers=headers)
            assert response.status_code == status, (case.id, response.text[:300])
            assert fragment in response.json()["error"], case.id
    # Every worker is still there and still answers.
    result = client.infer("echo", [infer_input("a", np.array([1, 2], dtype=np.int8), binary=True)])
    assert result.as_numpy("a").tolist() == [1, 2]


def test_server_with_a_failed_model_is_live_but_not_ready() -> None:
    with gunicorn("v2_app:app", worker_class="gevent", env={"WITH_BROKEN_SETUP": "1"}) as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            assert client.is_server_live()
            assert not client.is_server_ready()
            assert not client.is_model_ready("broken")
            assert client.is_model_ready("iris")
            with pytest.raises(InferenceServerException) as error:
                client.infer("broken", [infer_input("a", np.zeros(1, dtype=np.float32), binary=True)])
            assert error.value.status() == "503"
            assert "/secret" not in error.value.message()
        finally:
            client.close()
        response = httpx.get(server.url + "/v2/health/ready", timeout=30)
        assert response.json() == {"ready": False, "error": "Not ready: the setup of 'broken' failed."}


def test_docs_client_examples_work_as_written(server: RunningServer) -> None:
    """docs/v2.md's tritonclient and curl examples, run against the server (its port swapped in)."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "v2.md").read_text()
    [python] = [
        block for block in re.findall(r"```python\n(.*?)```", docs, flags=re.S) if "InferenceServerClient(" in block
    ]
    namespace: dict[str, Any] = {}
    exec(compile(python.replace("localhost:5000", server.url.removeprefix("http://")), "docs-v2", "exec"), namespace)
    expected = MyPredictor().model.predict_proba(IRIS[:1])[0]
    np.testing.assert_allclose(namespace["probability"], expected)

    [curl] = [block for block in re.findall(r"```bash\n(.*?)```", docs, flags=re.S) if "/v2/models/iris/infer" in block]
    payload = re.search(r"-d '(.*?)'", curl, flags=re.S)
    shown = re.search(r"^# (\{.*\})$", curl, flags=re.M)
    assert payload and shown
    response = httpx.post(server.url + "/v2/models/iris/infer", content=payload.group(1), timeout=30)
    got, documented = response.json(), json.loads(shown.group(1))
    assert got["outputs"][0].pop("data") == pytest.approx(documented["outputs"][0].pop("data"))
    assert got == documented


@pytest.mark.parametrize("mode", ["json", "binary-in", "binary-out", "binary"])
def test_non_finite_numbers_survive_every_encoding(client: triton.InferenceServerClient, mode: str) -> None:
    """NaN and infinities as Triton writes them in JSON (``NaN``, ``Infinity``, ``-Infinity``), never ``null``."""
    binary_in, binary_out = mode in ("binary", "binary-in"), mode in ("binary", "binary-out")
    sent = {
        "fp32": np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32),
        "fp64": np.array([[np.inf, 2.5], [np.nan, -np.inf]]),
        "fp16": np.array([-np.inf, np.nan], dtype=np.float16),
    }
    inputs = [infer_input(name, array, binary=binary_in) for name, array in sent.items()]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary_out) for name in sent]
    result = client.infer("echo", inputs, outputs=outputs)
    for name, array in sent.items():
        got = result.as_numpy(name)
        assert got.dtype == array.dtype and got.shape == array.shape, name
        np.testing.assert_array_equal(got, array, err_msg=name)  # NaN equals NaN here


def test_statistics_extension_read_by_tritonclient(client: triton.InferenceServerClient) -> None:
    x = infer_input("x", np.ones((1, 3), dtype=np.float32), binary=True)
    before = client.get_inference_statistics("scaler", "1")["model_stats"][0]
    for _ in range(3):
        client.infer("scaler", [x], model_version="1")
    with pytest.raises(InferenceServerException):
        client.infer("scaler", [infer_input("x", np.ones((1, 4), dtype=np.float32), binary=True)], model_version="1")
    stats = client.get_inference_statistics("scaler", "1")["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("scaler", "1")]
    after = stats[0]
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["execution_count"] - before["execution_count"] == 3
    inference = after["inference_stats"]
    assert inference["success"]["count"] - before["inference_stats"]["success"]["count"] == 3
    assert inference["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert after["last_inference"] >= before["last_inference"] and after["last_inference"] > 0
    assert after["batch_stats"][0]["batch_size"] == 1
    everything = client.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} >= {("scaler", "1"), ("scaler", "2"), ("iris", "")}
    both_versions = client.get_inference_statistics("scaler")["model_stats"]
    assert [s["version"] for s in both_versions] == ["1", "2"]


def test_statistics_are_summed_over_gunicorn_workers() -> None:
    with gunicorn("v2_app:app", worker_class="sync", workers=2) as server:
        x = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
        for _ in range(24):  # a new connection each: the kernel spreads them over both workers
            response = httpx.post(server.url + "/v2/models/scaler/versions/2/infer", json=x, timeout=30)
            assert response.status_code == 200
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            for _ in range(8):  # whichever worker answers, it reports every worker's totals
                [stats] = client.get_inference_statistics("scaler", "2")["model_stats"]
                assert stats["inference_count"] == 24 and stats["execution_count"] == 24
        finally:
            client.close()


@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_bf16_over_the_binary_extension(client: triton.InferenceServerClient, binary_out: bool) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([[1.5, -2.0, 0.25], [3.0, np.inf, -0.5]], dtype=ml_dtypes.bfloat16)
    tensor = triton.InferInput("h", list(values.shape), "BF16")
    tensor.set_data_from_numpy(values, binary_data=True)  # tritonclient sends BF16 only as binary
    result = client.infer("echo", [tensor], outputs=[triton.InferRequestedOutput("h", binary_data=binary_out)])
    assert result.get_output("h")["datatype"] == "BF16"
    np.testing.assert_array_equal(result.as_numpy("h").astype(np.float32), values.astype(np.float32))
