"""Schemathesis against /openapi.json of the iris example under real gunicorn: no 5xx, and every response
matches the document (status, content type, headers, body). Bounded: a fixed seed, a fixed number of examples
per operation, and a time limit on the whole run.

Two apps: the seed example exactly as shipped (no declared schema: its route accepts any JSON), and the same
model with ``request_schema``/``response_schema`` declared (tests/apps/iris_schema_app.py), whose route must
also accept every request its schema allows and refuse every one it forbids.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.servers import APPS_DIR, RunningServer, gunicorn

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "iris"
CONFORMANCE = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance," \
    "response_schema_conformance"
MAX_EXAMPLES = "40"
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example (app.py unchanged) with the model its own train.py saves."""
    folder = tmp_path_factory.mktemp("iris")
    for name in ("app.py", "train.py"):
        shutil.copyfile(EXAMPLE / name, folder / name)
    subprocess.run([sys.executable, "train.py"], cwd=folder, check=True, capture_output=True, timeout=120)
    return folder


def schemathesis(server: RunningServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
        "--max-examples", MAX_EXAMPLES, "--seed", "20240501", "--no-shrink", "--workers", "1",
        "--request-timeout", "30", *args,
    ]
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def assert_passed(run: subprocess.CompletedProcess[str]) -> None:
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    counted = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counted and counted[1] == counted[2] and int(counted[1]) > 0, output


def test_seed_example_conforms_to_its_document(iris: Path, tmp_path: Path) -> None:
    with gunicorn("app:app", workers=2, cwd=iris) as server:
        assert_passed(schemathesis(server, tmp_path, "--checks", CONFORMANCE))


def test_declared_schemas_are_what_the_route_enforces(iris: Path, tmp_path: Path) -> None:
    with gunicorn("iris_schema_app:app", workers=2, cwd=iris, extra_args=["--pythonpath", str(APPS_DIR)]) as server:
        assert_passed(schemathesis(server, tmp_path, "--checks", CONFORMANCE))
        # The predictor's own route, whose schema is declared: also valid data accepted, invalid data refused,
        # wrong methods answered 405 with Allow, and the rest of schemathesis' checks.
        assert_passed(schemathesis(server, tmp_path, "--checks", "all", "--include-path", "/api/v1/predict"))
