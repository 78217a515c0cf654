"""mest.models: BaseModel is abstract; JoblibModel round-trips a real scikit-learn model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mest.models import BaseModel, JoblibModel

X = np.array([[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [0.9, 1.1]])
Y = np.array([0, 0, 1, 1])


@pytest.fixture
def saved_model(tmp_path: Path) -> tuple[LogisticRegression, Path]:
    model = LogisticRegression().fit(X, Y)
    path = tmp_path / "models" / "lr.pkl"
    path.parent.mkdir()
    joblib.dump(model, path)
    return model, path


def test_base_model_is_abstract() -> None:
    with pytest.raises(TypeError):
        BaseModel()  # type: ignore[abstract]

    class NoLoad(BaseModel):
        pass

    with pytest.raises(TypeError):
        NoLoad()  # type: ignore[abstract]


def test_base_model_subclass_with_load() -> None:
    class Constant(BaseModel):
        def load(self) -> Any:
            return 42

    assert Constant().load() == 42


def test_joblib_model_round_trip(saved_model: tuple[LogisticRegression, Path]) -> None:
    original, path = saved_model
    loaded = JoblibModel(path).load()
    assert isinstance(loaded, LogisticRegression)
    assert loaded is not original
    np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))


def test_joblib_model_accepts_str_and_pathlike(saved_model: tuple[LogisticRegression, Path]) -> None:
    _, path = saved_model
    assert JoblibModel(str(path)).path == str(path)
    assert JoblibModel(path).path == str(path)
    assert repr(JoblibModel(path)) == f"JoblibModel({str(path)!r})"


def test_joblib_relative_path_resolves_at_load_time(
    saved_model: tuple[LogisticRegression, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = saved_model
    model = JoblibModel("models/lr.pkl")  # created anywhere, loaded from the working directory
    monkeypatch.chdir(path.parent.parent)
    assert isinstance(model.load(), LogisticRegression)


def test_joblib_mmap_mode(tmp_path: Path) -> None:
    path = tmp_path / "weights.joblib"
    joblib.dump({"w": np.arange(1000, dtype=np.float64)}, path)
    loaded = JoblibModel(path, mmap_mode="r").load()
    assert isinstance(loaded["w"], np.memmap)
    assert loaded["w"][999] == 999.0


def test_joblib_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        JoblibModel(tmp_path / "missing.pkl").load()
