"""The seed example, end to end: train examples/iris, then serve its app.py UNCHANGED with ``python app.py``
(``app.run()``) and with ``gunicorn -k gevent app:app`` (where ``app.run()`` must be a no-op)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.servers import RunningServer, dev_server, gunicorn, stop

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "iris"
SETOSA = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example folder (app.py byte for byte), with the model its own train.py saves."""
    folder = tmp_path_factory.mktemp("iris")
    for name in ("app.py", "train.py"):
        shutil.copyfile(EXAMPLE / name, folder / name)
    subprocess.run([sys.executable, "train.py"], cwd=folder, check=True, capture_output=True, timeout=120)
    assert (folder / "models" / "logistic_regression.pkl").is_file()
    assert (folder / "app.py").read_bytes() == (EXAMPLE / "app.py").read_bytes()
    return folder


def assert_predicts(server: RunningServer) -> None:
    with server.client() as http:
        response = http.post("/api/v1/predict", json={"features": [SETOSA]})
        assert response.status_code == 200, response.text
        probabilities = response.json()["probability"]
        assert len(probabilities) == 3
        assert sum(probabilities) == pytest.approx(1.0)
        assert max(probabilities) == probabilities[0]  # a textbook setosa
        assert http.post("/api/v1/predict", json={"rows": []}).status_code == 400
        assert http.get("/health/ready").status_code == 200


def test_python_app_py(iris: Path) -> None:
    with dev_server("app.py", cwd=iris) as server:
        assert "POST   /api/v1/predict" in server.output
        assert_predicts(server)
        assert stop(server, signal.SIGINT) == 0
    assert "stopped" in server.output


def test_gunicorn_gevent(iris: Path) -> None:
    with gunicorn("app:app", worker_class="gevent", workers=2, cwd=iris) as server:
        assert_predicts(server)
        assert stop(server, signal.SIGTERM) == 0
