"""The README's code must work exactly as written (the seed's promise to its users)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mest.testing import TestClient

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _normalized(code: str) -> list[str]:
    return [line.rstrip() for line in code.strip().splitlines()]


def _block_containing(marker: str) -> str:
    found = [block for block in PYTHON_BLOCKS if marker in block]
    assert len(found) == 1, f"expected one README python block containing {marker!r}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding models/logistic_regression.pkl trained by the example's own script."""
    pytest.importorskip("sklearn")
    from importlib.util import module_from_spec, spec_from_file_location

    folder = tmp_path_factory.mktemp("iris")
    spec = spec_from_file_location("iris_train", ROOT / "examples" / "iris" / "train.py")
    assert spec and spec.loader
    train = module_from_spec(spec)
    spec.loader.exec_module(train)
    train.main(out=folder / "models" / "logistic_regression.pkl")
    return folder


def test_seed_example_in_readme_is_the_shipped_example_app() -> None:
    # examples/iris/app.py is served for real by the end-to-end tests; the README shows the same code.
    block = _block_containing("class MyPredictor(PredictorBase)")
    shipped = (ROOT / "examples" / "iris" / "app.py").read_text()
    assert _normalized(block) == _normalized(shipped)


def test_base_model_example_serves_predictions(iris_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(iris_dir)
    namespace: dict[str, object] = {}
    exec(compile(_block_containing("JoblibModel("), "README-basemodel", "exec"), namespace)
    namespace["__name__"] = "readme"
    testing_block = _block_containing("TestClient(app)")
    exec(compile(testing_block, "README-testing", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, object) and result.status_code == 200  # type: ignore[attr-defined]
    assert len(result.json()["probability"]) == 3  # type: ignore[attr-defined]


def test_web_framework_skeleton_constructs_and_names_the_missing_method() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_block_containing("class MyWebFramework(WebFramework)"), "README-webframework", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=r"MyWebFramework\.add_route"):
        TestClient(namespace["app"]).get("/health/live")  # type: ignore[arg-type]


def test_production_app_module_is_a_wsgi_app() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_block_containing("# other imports ..."), "README-production", "exec"), namespace)
    result = TestClient(namespace["app"]).get("/health/live")  # type: ignore[arg-type]
    assert result.status_code == 200


def test_quickstart_commands_exist_and_are_executable() -> None:
    for command in re.findall(r"^(\./scripts/[\w-]+)$", README, flags=re.M):
        path = ROOT / command
        assert path.is_file() and path.stat().st_mode & 0o111, command
    commands = set(re.findall(r"^(\./scripts/[\w-]+)$", README, flags=re.M))
    assert {"./scripts/serve-example", "./scripts/test"} <= commands
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_schema_example_validates_requests() -> None:
    pytest.importorskip("pydantic")
    from mest import Mest

    namespace: dict[str, object] = {}
    exec(compile(_block_containing("request_schema = IrisRequest"), "README-schemas", "exec"), namespace)
    app = Mest()
    app.add_inference_handler(namespace["SchemaPredictor"](), "/sums")  # type: ignore[operator]
    client = TestClient(app)
    good = client.post("/sums", json={"features": [[1.0, 2.0], [3.0, 4.0]]})
    assert good.status_code == 200 and good.json() == {"sums": [3.0, 7.0]}
    bad = client.post("/sums", json={"features": "not a matrix"})
    assert bad.status_code == 422
    assert bad.json()["detail"], bad.json()


@pytest.mark.server
@pytest.mark.parametrize("kind", ["dev", "gevent"])
def test_v2_client_example_talks_to_the_served_seed_example(iris_dir: Path, kind: str) -> None:
    """The snippet as written targets port 5000: ``python app.py`` (the dev server), or gunicorn."""
    pytest.importorskip("tritonclient.http")
    from support.servers import dev_server, gunicorn

    shutil.copy(ROOT / "examples" / "iris" / "app.py", iris_dir / "app.py")
    code = _block_containing("InferenceServerClient(")
    if kind == "dev":
        launch = dev_server("app.py", cwd=iris_dir)
    else:
        launch = gunicorn("app:app", worker_class=kind, cwd=iris_dir)
    with launch as server:
        address = server.url.removeprefix("http://")
        namespace: dict[str, object] = {}
        exec(compile(code.replace('"localhost:5000"', repr(address)), "README-v2", "exec"), namespace)
        probabilities = namespace["result"].as_numpy("probability")  # type: ignore[attr-defined]
        assert probabilities.shape == (3,) and abs(float(probabilities.sum()) - 1.0) < 1e-6
