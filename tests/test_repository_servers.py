"""``mest serve --model-repository`` for real: gunicorn with two workers, driven by tritonclient.

The models are made here (iris in ONNX, skops, XGBoost, LightGBM and a torch.export program); every answer must
equal the framework's own prediction. Model control must reach *every* worker: with sync workers, a connection
that sends nothing holds one worker, so the next connection is served by the other, and the request then sent
on the held connection by the first; the request ids' per-process prefixes confirm two processes answered.
With gevent workers (which take many connections each), every answer to 20 new connections must agree.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from support import model_files as mf
from support.mest_serve import mest_argv, running
from support.servers import RunningServer

pytestmark = pytest.mark.server

REQUEST_TIMEOUT_S = 60.0  # a worker may still be starting (its models load and warm up first)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("repo") / "models"
    expected = {
        "iris": mf.onnx_iris(root / "iris" / "1" / "model.onnx")[1],
        "flowers": mf.skops_iris(root / "flowers" / "1" / "model.skops")[1],
        "xgb": mf.xgboost_iris(root / "xgb" / "1" / "model.json")[1],
        "lgb": mf.lightgbm_iris(root / "lgb" / "1" / "model.txt")[1],
        "net": mf.exported_iris(root / "net" / "1" / "model.pt2")[1],
    }
    (root / "iris" / "mest.json").write_text(json.dumps({"outputs": ["probabilities"], "max_batch_size": 8}))
    return root, expected


@pytest.fixture(scope="module", params=["sync", "gevent"])
def server(request: pytest.FixtureRequest, repository: tuple[Path, dict[str, Any]]) -> Iterator[RunningServer]:
    argv = mest_argv(f"--model-repository={repository[0]}", "--model-control", "explicit",
                     "--workers", "2", "--worker-class", request.param)
    with running(argv, env={"OMP_NUM_THREADS": "1"}) as started:
        yield started


@pytest.fixture
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=REQUEST_TIMEOUT_S)
    try:
        yield client
    finally:
        client.close()


def _input(name: str, array: np.ndarray[Any, Any], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), triton.np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infers_every_model(
    client: triton.InferenceServerClient, repository: tuple[Path, dict[str, Any]], binary: bool
) -> None:
    _, expected = repository
    assert client.is_server_ready()
    for name, want in expected.items():
        metadata = client.get_model_metadata(name)
        spec = metadata["inputs"][0]
        assert spec["shape"] == [-1, 4]
        x = mf.X.astype(triton.triton_to_np_dtype(spec["datatype"]))
        outputs = [triton.InferRequestedOutput(o["name"], binary_data=binary) for o in metadata["outputs"]]
        result = client.infer(name, [_input(spec["name"], x, binary=binary)], outputs=outputs)
        got = result.as_numpy(metadata["outputs"][-1]["name"])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_index_lists_every_model(client: triton.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    assert {(m["name"], m["version"], m["state"]) for m in index} == {
        (name, "1", "READY") for name in ("iris", "flowers", "xgb", "lgb", "net")}


def _raw_infer(conn: socket.socket, host: str, body: bytes) -> tuple[int, str]:
    """Send one V2 infer request for iris on ``conn``; return the status and the request id's process prefix."""
    conn.sendall(
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    conn.settimeout(REQUEST_TIMEOUT_S)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in head[1:])}
    return int(head[0].split()[1]), headers["x-request-id"][:16]


def _on_both_workers(server: RunningServer) -> list[int]:
    """The iris infer answer of each of the two sync workers."""
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT_S) as held:  # holds one worker
        with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT_S) as other:
            first = _raw_infer(other, f"{host}:{port}", body.encode())
        second = _raw_infer(held, f"{host}:{port}", body.encode())
    assert first[1] != second[1], "the same process answered both: the test did not reach two workers"
    return [first[0], second[0]]


def test_unload_and_load_reach_every_worker(
    server: RunningServer, client: triton.InferenceServerClient, request: pytest.FixtureRequest
) -> None:
    # Sync workers: each of the two reached for sure (the held connection). Gevent workers take any number of
    # connections each, so there 20 new connections are sent, and every answer, whichever worker gave it, counts.
    statuses = _on_both_workers if "sync" in request.node.callspec.id else _on_new_connections
    assert set(statuses(server)) == {200}
    client.unload_model("iris")
    assert set(statuses(server)) == {404}
    assert not client.is_model_ready("iris")
    assert client.is_model_ready("flowers")
    assert {m["name"]: m["state"] for m in client.get_model_repository_index()}["iris"] == "UNAVAILABLE"
    client.load_model("iris")
    assert set(statuses(server)) == {200}
    assert client.is_model_ready("iris")


def _on_new_connections(server: RunningServer) -> list[int]:
    """The statuses of 20 iris infer requests, each on a new connection (any worker may take each)."""
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    answers = []
    for _ in range(20):
        with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT_S) as conn:
            answers.append(_raw_infer(conn, f"{host}:{port}", body.encode())[0])
    return answers


def test_v2_repository_needs_the_key_when_keys_are_on(repository: tuple[Path, dict[str, Any]]) -> None:
    argv = mest_argv(f"--model-repository={repository[0]}", "--model-control", "explicit", "--workers", "1")
    with running(argv, env={"MEST_API_KEYS": "k1"}) as started:
        assert httpx.post(started.url + "/v2/repository/index", timeout=REQUEST_TIMEOUT_S).status_code == 401
        answer = httpx.post(started.url + "/v2/repository/models/iris/unload", headers={"X-API-Key": "k1"},
                            timeout=REQUEST_TIMEOUT_S)
        assert answer.status_code == 200


def test_serving_a_pickle_fails_before_any_worker_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    mf.exploit_pickle(tmp_path / "models" / "evil" / "1" / "model.pkl", marker)
    argv = mest_argv(f"--model-repository={tmp_path / 'models'}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is a pickle" in result.stderr and "allow_pickle" in result.stderr
    assert not marker.exists()
