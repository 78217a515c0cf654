"""The built-in runtimes in process: each serves a model file made here and answers what the framework predicts.

Every format: its own route and V2 give the framework's own predictions, V2 metadata is derived from the model,
bad inputs are 400s naming the input, and batches (concatenated along the first dimension) split back into the
same answers as single requests.
"""

from __future__ import annotations

import builtins
import logging
import operator
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mest import Mest, runtimes
from mest.tensors import TensorSpec
from mest.testing import TestClient
from support import model_files as mf

INPUT_FP32 = [TensorSpec("input", "FP32", [-1, 4])]

# (maker, file name, runtime options, the output compared with the framework's predictions)
FORMATS: dict[str, tuple[Callable[[Path], tuple[Path, Any]], str, dict[str, Any], str]] = {
    "onnx": (mf.onnx_iris, "model.onnx", {}, "probabilities"),
    "skops": (mf.skops_iris, "model.skops", {}, "predict"),
    "xgboost": (mf.xgboost_iris, "model.json", {}, "predict"),
    "xgboost-ubj": (mf.xgboost_iris, "model.ubj", {}, "predict"),
    "lightgbm": (mf.lightgbm_iris, "model.txt", {}, "predict"),
    "torchscript": (mf.torchscript_iris, "model.pt", {"inputs": INPUT_FP32}, "output0"),
    "torch-export": (mf.exported_iris, "model.pt2", {}, "output0"),
}


@pytest.fixture(params=list(FORMATS))
def served(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[runtimes.RuntimePredictor, Any, str]:
    maker, filename, options, output = FORMATS[request.param]
    path, expected = maker(tmp_path / filename)
    return runtimes.predictor_for(path, **options), expected, output


def _client(predictor: runtimes.RuntimePredictor, **kwargs: Any) -> TestClient:
    app = Mest(access_log=False, metrics_path=None)
    app.add_inference_handler(predictor, "/iris", name="iris", **kwargs)
    return TestClient(app)


def test_own_route_and_v2_answer_the_frameworks_predictions(served: Any) -> None:
    predictor, expected, output = served
    client = _client(predictor)
    spec = predictor.inputs[0]
    own = client.post("/iris", json={spec.name: mf.X.tolist()})
    assert own.status_code == 200, own.text
    np.testing.assert_allclose(np.asarray(own.json()[output]), expected, rtol=1e-5, atol=1e-6)
    v2 = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": spec.name, "datatype": spec.datatype, "shape": [2, 4], "data": mf.X.ravel().tolist()}
    ]})
    assert v2.status_code == 200, v2.text
    tensor = {t["name"]: t for t in v2.json()["outputs"]}[output]
    np.testing.assert_allclose(np.reshape(tensor["data"], tensor["shape"]), expected, rtol=1e-5, atol=1e-6)


def test_metadata_is_derived_from_the_model(served: Any) -> None:
    predictor, expected, output = served
    meta = _client(predictor).get("/v2/models/iris").json()
    assert [(t["name"], t["shape"]) for t in meta["inputs"]] == [(predictor.inputs[0].name, [-1, 4])]
    declared = {t["name"]: t for t in meta["outputs"]}[output]
    assert declared["shape"] == [-1, *np.asarray(expected).shape[1:]]


def test_bad_inputs_are_400s_naming_the_input(served: Any) -> None:
    predictor, _, _ = served
    client = _client(predictor)
    name = predictor.inputs[0].name
    wrong_shape = client.post("/iris", json={name: [[1.0, 2.0]]})
    assert wrong_shape.status_code == 400 and repr(name) in wrong_shape.json()["error"]
    not_numbers = client.post("/iris", json={name: [["a", "b", "c", "d"]]})
    assert not_numbers.status_code == 400 and repr(name) in not_numbers.json()["error"]
    unknown = client.post("/iris", json={name: mf.X.tolist(), "other": [1]})
    assert unknown.status_code == 400 and "'other'" in unknown.json()["error"]
    v2 = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": name, "datatype": predictor.inputs[0].datatype, "shape": [1, 3], "data": [1, 2, 3]}
    ]})
    assert v2.status_code == 400 and name in v2.json()["error"]


def test_a_batch_is_concatenated_and_split_back(served: Any) -> None:
    predictor, _, output = served
    name = predictor.inputs[0].name
    items = [predictor.validate({name: mf.X[i:i + 1].tolist()}) for i in range(2)]
    items.append(predictor.validate({name: mf.X.tolist()}))
    batched = predictor.infer(items)
    assert [b[output].shape[0] for b in batched] == [1, 1, 2]
    for item, answer in zip(items, batched, strict=True):
        np.testing.assert_allclose(answer[output], predictor.infer(item)[output], rtol=1e-6)


def test_concurrent_requests_batched_on_the_route(tmp_path: Path) -> None:
    path, expected = mf.onnx_iris(tmp_path / "model.onnx")
    client = _client(runtimes.predictor_for(path), max_batch_size=8, max_batch_delay_ms=20)
    answers: list[Any] = [None] * 8

    def send(i: int) -> None:
        answers[i] = client.post("/iris", json={"input": mf.X[i % 2:i % 2 + 1].tolist()}).json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer["probabilities"][0], expected[i % 2], rtol=1e-5)


def test_onnx_outputs_chosen_by_name_and_session_options(tmp_path: Path) -> None:
    path, _ = mf.onnx_iris(tmp_path / "model.onnx")
    predictor = runtimes.predictor_for(path, outputs=["label"], intra_op_threads=1, inter_op_threads=1)
    assert [s.to_dict() for s in predictor.outputs] == [{"name": "label", "datatype": "INT64", "shape": [-1]}]
    assert _client(predictor).post("/iris", json={"input": mf.X.tolist()}).json() == {"label": [0, 2]}
    with pytest.raises(ValueError, match="no output 'nope'"):
        runtimes.predictor_for(path, outputs=["nope"])
    assert runtimes.onnx_datatype("tensor(float)") == "FP32" and runtimes.onnx_datatype("seq(map)") is None


def test_sklearn_predict_proba_is_checked_on_the_last_step(tmp_path: Path) -> None:
    path, expected = mf.skops_iris(tmp_path / "model.skops", method="predict_proba")
    predictor = runtimes.predictor_for(path, method="predict_proba")
    answer = _client(predictor).post("/iris", json=mf.X.tolist()).json()  # one input: the bare list
    np.testing.assert_allclose(answer["predict_proba"], expected, rtol=1e-6)
    sio = pytest.importorskip("skops.io")
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    svc = tmp_path / "svc.skops"
    sio.dump(make_pipeline(SVC()).fit(mf.X_TRAIN, mf.Y_TRAIN), svc)  # SVC without probability=True
    with pytest.raises(ValueError, match="SVC has no predict_proba"):
        runtimes.predictor_for(svc, method="predict_proba")


def test_skops_untrusted_types_are_refused_unless_listed(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "model.skops"
    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=500))
    sio.dump(model.fit(mf.X_TRAIN, mf.Y_TRAIN), path)
    with pytest.raises(ValueError, match=r"_operator\.neg"):
        runtimes.predictor_for(path)
    predictor = runtimes.predictor_for(path, trusted=["_operator.neg"])
    assert _client(predictor).post("/iris", json=mf.X.tolist()).json() == {"predict": model.predict(mf.X).tolist()}


def test_a_pickle_is_refused_without_being_opened(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = mf.exploit_pickle(tmp_path / "model.joblib", marker)
    with pytest.raises(runtimes.PickleNotAllowed, match="allow_pickle"):
        runtimes.predictor_for(path)
    assert not marker.exists()


def test_an_allowed_pickle_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(mf.X_TRAIN, mf.Y_TRAIN), path)
    with caplog.at_level(logging.WARNING, logger="mest.runtimes"):
        predictor = runtimes.predictor_for(path, allow_pickle=True)
    assert any("pickle" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert _client(predictor).post("/iris", json={"input": mf.X.tolist()}).json() == {"predict": [0, 2]}


def test_warmup_runs_in_setup_with_the_given_inputs(tmp_path: Path) -> None:
    path, _ = mf.onnx_iris(tmp_path / "model.onnx")
    predictor = runtimes.predictor_for(path, warmup_inputs=[{"input": [[1, 2, 3, 4]]}, {"input": [[0, 0, 0, 0]]}])
    calls: list[Any] = []
    run = predictor.runtime.run
    predictor.runtime.run = lambda loaded, inputs, outputs: calls.append(inputs) or run(loaded, inputs, outputs)
    predictor.setup()
    assert [c["input"].tolist() for c in calls] == [[[1, 2, 3, 4]], [[0, 0, 0, 0]]]
    calls.clear()
    runtimes.predictor_for(path, warmup=3).setup()  # generated warmups run through the runtime too
    with pytest.raises(Exception, match="'input'"):
        runtimes.predictor_for(path, warmup_inputs=[{"input": [[1, 2]]}])


def test_torchscript_needs_declared_inputs(tmp_path: Path) -> None:
    path, _ = mf.torchscript_iris(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="declare them"):
        runtimes.predictor_for(path)


def test_unknown_suffix_and_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no built-in runtime"):
        runtimes.predictor_for(tmp_path / "model.h5")
    path, _ = mf.onnx_iris(tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="no option 'threads'"):
        runtimes.predictor_for(path, threads=2)


def test_a_missing_extra_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = mf.onnx_iris(tmp_path / "model.onnx")
    real_import = builtins.__import__

    def no_onnxruntime(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(runtimes.MissingExtra, match=r"pip install 'mest\[onnx\]'"):
        runtimes.predictor_for(path)


def test_the_facades_export_what_they_define() -> None:
    import mest.repository

    for module in (runtimes, mest.repository):  # the order of __all__ is ruff's (RUF022)
        assert len(set(module.__all__)) == len(module.__all__)
        public = {name for name in vars(module) if not name.startswith("_")} - {"annotations"}
        assert set(module.__all__) <= public
