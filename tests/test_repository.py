"""The model repository in process: a folder of model files made here → registrations, settings, model control.

What runs for real under gunicorn (two workers, tritonclient) is in test_repository_servers.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from mest.cli import main
from mest.repository import RepositoryError, app_from_repository
from mest.repository._state import ModelState, SharedState
from mest.testing import TestClient
from support import model_files as mf


def _settings(repo: Path, name: str, **settings: Any) -> None:
    (repo / name).mkdir(parents=True, exist_ok=True)
    (repo / name / "mest.json").write_text(json.dumps(settings))


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """iris (ONNX, versions 1 and 2), flowers (skops), boosted (LightGBM); with the frameworks' predictions."""
    root = tmp_path / "models"
    _, onnx_expected = mf.onnx_iris(root / "iris" / "1" / "model.onnx")
    mf.onnx_iris(root / "iris" / "2" / "model.onnx")
    _settings(root, "iris", version_policy={"latest": 2}, max_batch_size=4, outputs=["probabilities"])
    _, skops_expected = mf.skops_iris(root / "flowers" / "3" / "model.skops")
    _, lgb_expected = mf.lightgbm_iris(root / "boosted" / "1" / "model.txt")
    return root, {"iris": onnx_expected, "flowers": skops_expected, "boosted": lgb_expected}


def test_every_model_is_registered_on_v2_and_its_own_route(repo: tuple[Path, dict[str, Any]]) -> None:
    root, expected = repo
    app = app_from_repository(root, access_log=False)
    client = TestClient(app)
    models = {(p.config.name, p.config.version, p.config.route, p.config.max_batch_size) for p in app.pipelines}
    assert models == {
        ("iris", "1", "/models/iris/versions/1", 4), ("iris", "2", "/models/iris", 4),
        ("flowers", "3", "/models/flowers", 1), ("boosted", "1", "/models/boosted", 1),
    }
    iris = client.post("/models/iris", json={"input": mf.X.tolist()}).json()
    assert list(iris) == ["probabilities"]  # the settings' outputs
    np.testing.assert_allclose(iris["probabilities"], expected["iris"], rtol=1e-5)
    flowers = client.post("/v2/models/flowers/infer", json={"inputs": [
        {"name": "input", "datatype": "FP64", "shape": [2, 4], "data": mf.X.ravel().tolist()}]}).json()
    assert flowers["model_version"] == "3" and flowers["outputs"][0]["data"] == expected["flowers"].tolist()
    boosted = client.post("/v2/models/boosted/versions/1/infer", json={"inputs": [
        {"name": "input", "datatype": "FP64", "shape": [2, 4], "data": mf.X.ravel().tolist()}]}).json()
    np.testing.assert_allclose(np.reshape(boosted["outputs"][0]["data"], (2, 3)), expected["boosted"], rtol=1e-6)
    meta = client.get("/v2/models/iris").json()
    assert meta["versions"] == ["1", "2"] and meta["inputs"] == [{"name": "input", "datatype": "FP32",
                                                                  "shape": [-1, 4]}]
    assert "/models/flowers" in client.get("/openapi.json").json()["paths"]
    assert 'model="boosted"' in client.get("/metrics").text
    assert client.get("/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("policy", "served"),
    [(None, ["10"]), ({"latest": 2}, ["9", "10"]), ({"all": True}, ["2", "9", "10"]), ({"specific": ["2"]}, ["2"])],
)
def test_version_policy(tmp_path: Path, policy: Any, served: list[str]) -> None:
    for version in ("2", "9", "10"):  # integers order as integers: 10 is the latest
        mf.onnx_iris(tmp_path / "iris" / version / "model.onnx")
    if policy is not None:
        _settings(tmp_path, "iris", version_policy=policy)
    app = app_from_repository(tmp_path)
    assert [p.config.version for p in app.pipelines] == served


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ('{"max_batch_sise": 4}', "field 'max_batch_sise': Extra inputs are not permitted"),
        ('{"max_batch_size": "4"}', "field 'max_batch_size'"),
        ('{"timeout_s": 0}', "field 'timeout_s'"),
        ('{"version_policy": {"latest": 1, "all": true}}', "field 'version_policy'"),
        ('{"version_policy": {"specific": ["7"]}}', "no version to serve"),
        ('{"options": {"threads": 2}}', "field 'options.threads'"),
        ('{"warmup_inputs": [{"input": [[1, 2]]}]}', "'input' has shape [1, 2]"),
        ("[]", "must be a JSON object"),
    ],
)
def test_settings_errors_name_the_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    mf.onnx_iris(tmp_path / "iris" / "1" / "model.onnx")
    (tmp_path / "iris" / "mest.json").write_text(content)
    with pytest.raises(RepositoryError) as caught:
        app_from_repository(tmp_path)
    assert message in str(caught.value)
    assert str(tmp_path / "iris") in str(caught.value)


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="has no model folder"):
        app_from_repository(tmp_path)
    (tmp_path / "iris" / "1").mkdir(parents=True)
    with pytest.raises(RepositoryError, match=r"no model file; put the model in it as model\.<ext>"):
        app_from_repository(tmp_path)
    (tmp_path / "iris" / "1" / "model.h5").write_bytes(b"x")
    with pytest.raises(RepositoryError, match=r"no built-in runtime serves '\.h5'"):
        app_from_repository(tmp_path)
    mf.onnx_iris(tmp_path / "iris" / "1" / "model.onnx")
    with pytest.raises(RepositoryError, match="several model files"):
        app_from_repository(tmp_path)
    with pytest.raises(RepositoryError, match="not a directory"):
        app_from_repository(tmp_path / "missing")


def test_a_pickle_is_refused_unloaded_in_the_repository_and_by_mest_check(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    mf.exploit_pickle(tmp_path / "models" / "evil" / "1" / "model.pkl", marker)
    with pytest.raises(RepositoryError, match=r'set "allow_pickle": true in .*evil/mest\.json'):
        app_from_repository(tmp_path / "models")
    result = CliRunner().invoke(main, ["check", "--model-repository", str(tmp_path / "models")])
    assert result.exit_code == 1 and "is a pickle" in result.output
    assert not marker.exists()


def test_an_allowed_pickle_is_served(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    (tmp_path / "lr" / "1").mkdir(parents=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(mf.X_TRAIN, mf.Y_TRAIN), tmp_path / "lr" / "1" / "model.joblib")
    _settings(tmp_path, "lr", allow_pickle=True)
    client = TestClient(app_from_repository(tmp_path))
    assert client.post("/models/lr", json={"input": mf.X.tolist()}).json() == {"predict": [0, 2]}


def test_torchscript_inputs_from_the_settings(tmp_path: Path) -> None:
    _, expected = mf.torchscript_iris(tmp_path / "net" / "1" / "model.pt")
    _settings(tmp_path, "net", options={"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                                        "device": "cpu"})
    client = TestClient(app_from_repository(tmp_path))
    answer = client.post("/models/net", json={"x": mf.X.tolist()}).json()
    np.testing.assert_allclose(answer["output0"], expected, rtol=1e-5)
    _settings(tmp_path, "net", options={"inputs": [{"name": "x", "datatype": "FP33", "shape": [-1, 4]}]})
    with pytest.raises(RepositoryError, match=r"field 'options\.inputs': .*unknown datatype 'FP33'"):
        app_from_repository(tmp_path)


def test_model_control_is_off_by_default(repo: tuple[Path, dict[str, Any]]) -> None:
    client = TestClient(app_from_repository(repo[0]))
    assert client.post("/v2/repository/index").status_code == 404
    assert client.post("/v2/repository/models/iris/unload").status_code == 404
    assert "model_repository" not in client.get("/v2").json()["extensions"]


def test_index_unload_and_load(repo: tuple[Path, dict[str, Any]]) -> None:
    root, expected = repo
    client = TestClient(app_from_repository(root, model_control="explicit", access_log=False))
    assert "model_repository" in client.get("/v2").json()["extensions"]  # listed in the server metadata
    index = client.post("/v2/repository/index").json()
    assert {(m["name"], m["version"], m["state"]) for m in index} == {
        ("iris", "1", "READY"), ("iris", "2", "READY"), ("flowers", "3", "READY"), ("boosted", "1", "READY")}
    assert client.post("/v2/repository/models/iris/unload").status_code == 200
    for method, path in [("POST", "/v2/models/iris/infer"), ("GET", "/v2/models/iris/ready"),
                         ("GET", "/v2/models/iris/versions/1"), ("POST", "/models/iris")]:
        answer = client.request(method, path, json={"input": [[1, 2, 3, 4]]})
        assert answer.status_code == 404 and "is not loaded" in answer.json()["error"], (path, answer.text)
    assert client.get("/v2/models/flowers/ready").status_code == 200  # the others are untouched
    states = {(m["name"], m["state"]) for m in client.post("/v2/repository/index").json()}
    assert ("iris", "UNAVAILABLE") in states and ("flowers", "READY") in states
    ready_only = client.post("/v2/repository/index", json={"ready": True}).json()
    assert "iris" not in {m["name"] for m in ready_only}
    assert client.post("/v2/repository/models/iris/load").status_code == 200
    answer = client.post("/models/iris", json={"input": mf.X.tolist()}).json()
    np.testing.assert_allclose(answer["probabilities"], expected["iris"], rtol=1e-5)
    refused = client.post("/v2/repository/models/iris/load", json={"parameters": {"config": "{}"}})
    assert refused.status_code == 400 and "'config'" in refused.json()["error"]
    assert client.post("/v2/repository/models/nope/load").status_code == 404


def test_a_failed_load_changes_nothing(tmp_path: Path) -> None:
    path, _ = mf.onnx_iris(tmp_path / "iris" / "1" / "model.onnx")
    client = TestClient(app_from_repository(tmp_path, model_control="explicit"))
    path.write_bytes(b"not an onnx model")
    answer = client.post("/v2/repository/models/iris/load")
    assert answer.status_code == 400 and "Failed to load model 'iris'" in answer.json()["error"]
    assert client.post("/models/iris", json={"input": [[1, 2, 3, 4]]}).status_code == 200  # the old copy serves


def test_the_extension_is_protected_by_api_keys(repo: tuple[Path, dict[str, Any]]) -> None:
    client = TestClient(app_from_repository(repo[0], model_control="explicit", api_keys=["s3cret"]))
    assert client.post("/v2/repository/index").status_code == 401
    assert client.post("/v2/repository/models/iris/unload").status_code == 401
    assert client.post("/v2/repository/index", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_shared_state_is_seen_by_another_process_view(tmp_path: Path) -> None:
    one, other = SharedState("repo", str(tmp_path)), SharedState("repo", str(tmp_path))
    assert other.get("iris") == ModelState(loaded=True, generation=0)
    one.set("iris", ModelState(loaded=False, generation=0))
    one.set("flowers", ModelState(loaded=True, generation=3))
    assert other.get("iris") == ModelState(loaded=False, generation=0)
    assert other.get("flowers") == ModelState(loaded=True, generation=3)


def test_mest_routes_and_check_on_a_repository(repo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = repo
    routes = CliRunner().invoke(main, ["routes", "--json", "--model-repository", str(root),
                                       "--model-control", "explicit"])
    assert routes.exit_code == 0, routes.output
    paths = {(r["method"], r["path"]) for r in json.loads(routes.output)["routes"]}
    assert {("POST", "/models/iris"), ("POST", "/v2/repository/index"),
            ("POST", "/v2/repository/models/flowers/load")} <= paths
    check = CliRunner().invoke(main, ["check", "--model-repository", str(root)])
    assert check.exit_code == 0, check.output
    assert "ok    iris v2 (/models/iris)" in check.output and "4 model(s) OK" in check.output
    both = CliRunner().invoke(main, ["check", "app:app", "--model-repository", str(root)])
    assert both.exit_code == 2 and "not both" in both.output


def test_every_setting_and_suffix_is_documented() -> None:
    from mest import runtimes
    from mest.repository import ModelSettings

    text = (Path(__file__).resolve().parent.parent / "docs" / "runtimes.md").read_text()
    for field in ModelSettings.model_fields:
        assert f"`{field}`" in text, f"mest.json field {field!r} is missing from docs/runtimes.md"
    for suffix in runtimes.SUFFIXES:
        assert f"`{suffix}`" in text, f"suffix {suffix!r} is missing from docs/runtimes.md"


def test_state_of_servers_that_are_gone_is_removed(tmp_path: Path) -> None:
    import os

    from mest.repository._state import _remove_stale, _start_time

    gone = tmp_path / "4194999-1-abc"  # above the largest pid Linux hands out
    mine = tmp_path / f"{os.getpid()}-{_start_time(os.getpid())}-abc"
    gone.mkdir()
    mine.mkdir()
    _remove_stale(str(tmp_path))
    assert not gone.exists() and mine.exists()
