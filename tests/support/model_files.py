"""Model files made by the tests themselves (iris: scikit-learn's bundled data), in a directory they give.

Each maker returns the file's path and the framework's own predictions on :data:`X`, which the served model
must reproduce. Each imports its libraries itself, so a test skips (``pytest.importorskip``) only the
formats whose extra is missing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sklearn_datasets = pytest.importorskip("sklearn.datasets")

_iris = sklearn_datasets.load_iris()
X_TRAIN = _iris.data
Y_TRAIN = _iris.target
#: Rows the tests send: the first and the last iris flower.
X = np.asarray(_iris.data[[0, 149]])


def _classifier() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(X_TRAIN, Y_TRAIN)


def onnx_iris(path: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    """A logistic regression converted with skl2onnx; predictions are its ``predict_proba``."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    model = _classifier()
    onx = skl2onnx.convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 4]))], options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())
    return path, model.predict_proba(X.astype(np.float32))


def skops_iris(path: Path, method: str = "predict") -> tuple[Path, np.ndarray[Any, Any]]:
    """A scaler + logistic-regression pipeline saved with skops."""
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X_TRAIN, Y_TRAIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(model, path)
    return path, getattr(model, method)(X)


def xgboost_iris(path: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    xgb = pytest.importorskip("xgboost")
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(X_TRAIN, label=Y_TRAIN), num_boost_round=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path))
    return path, booster.inplace_predict(X.astype(np.float32))


def lightgbm_iris(path: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    lgb = pytest.importorskip("lightgbm")
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1,
                         "min_data_in_leaf": 5}, lgb.Dataset(X_TRAIN, label=Y_TRAIN), num_boost_round=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path))
    return path, booster.predict(X)


def _torch_module() -> Any:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1)).eval()


def torchscript_iris(path: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    torch = pytest.importorskip("torch")
    module = _torch_module()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; files made with it are still served
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    with torch.inference_mode():
        return path, module(torch.from_numpy(X.astype(np.float32))).numpy()


def exported_iris(path: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    torch = pytest.importorskip("torch")
    module = _torch_module()
    example = (torch.zeros(2, 4),)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(module, example, dynamic_shapes=({0: batch},))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    with torch.inference_mode():
        return path, module(torch.from_numpy(X.astype(np.float32))).numpy()


class Exploit:
    """Pickled, it runs ``open(marker, "w")`` when loaded: what a hostile model file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def exploit_pickle(path: Path, marker: Path) -> Path:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Exploit(marker)))
    return path
