"""``mest ray config`` and the replica class, without a cluster: the Serve config passes Ray's own schema, the
deployment options follow batching, and a replica's health is the app's readiness.

The cluster tests are in ``test_deploy_ray.py``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.servers import APPS_DIR

yaml = pytest.importorskip("yaml")

# Ray is imported only in subprocesses: importing it changes the logging module's record factory for every
# later test in this process.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("a2wsgi") is None,
    reason="Ray Serve is not installed (pip install 'mest[ray]')",
)

TIMEOUT_S = 120

BROKEN_APP = '''
from mest import Mest
from mest.predictors import PredictorBase


class Broken(PredictorBase):
    def setup(self):
        raise FileNotFoundError("model.bin")

    def infer(self, processed_data):
        return processed_data


app = Mest()
app.add_inference_handler(Broken(), "/broken")
'''


def mest(*args: str, cwd: Path = APPS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mest", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def in_ray_process(code: str, cwd: Path = APPS_DIR) -> Any:
    """Run ``code`` (which prints one JSON value last) in a fresh interpreter; return that value."""
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                            timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def ongoing_requests_for(max_batch_size: int) -> int:
    return int(in_ray_process(f"from mest.deploy.ray import ongoing_requests_for as f; print(f({max_batch_size}))"))


def test_config_passes_rays_schema() -> None:
    result = mest("ray", "config", "batching_app:app", "--autoscale", "1:3", "--autoscaling-option",
                  "target_ongoing_requests=4", "--host", "0.0.0.0", "--port", "8123", "--working-dir", ".")
    assert result.returncode == 0, result.stderr
    # Ray's own schema for `serve deploy` files, which also rejects a local working_dir.
    checked = in_ray_process(
        "import json, sys, yaml\n"
        "from ray.serve.schema import ServeDeploySchema\n"
        f"schema = ServeDeploySchema.model_validate(yaml.safe_load({result.stdout!r}))\n"
        "print(json.dumps(schema.model_dump(mode='json', exclude_unset=True)))\n"
    )
    (application,) = checked["applications"]
    assert application["import_path"] == "mest.deploy.ray:build"
    expected = ongoing_requests_for(8)  # batching_app's largest max_batch_size
    assert application["args"] == {"app": "batching_app:app", "threads": expected}
    (deployment,) = application["deployments"]
    assert deployment["name"] == "Mest"
    assert deployment["max_ongoing_requests"] == expected
    assert deployment["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4}
    assert checked["http_options"]["port"] == 8123
    assert application["runtime_env"]["working_dir"] == f"local://{APPS_DIR}"


def test_a_local_working_dir_path_is_what_rays_schema_refuses() -> None:
    """The schema check above can fail: a plain path as working_dir is refused by Ray's own schema."""
    code = (
        "from ray.serve.schema import ServeDeploySchema\n"
        "config = {'applications': [{'import_path': 'mest.deploy.ray:build', 'args': {'app': 'basic_app:app'},\n"
        "                            'runtime_env': {'working_dir': '/tmp'}}]}\n"
        "try:\n"
        "    ServeDeploySchema.model_validate(config)\n"
        "except ValueError:\n"
        "    print('true')\n"
        "else:\n"
        "    print('false')\n"
    )
    assert in_ray_process(code) is True


def test_fixed_replicas_and_overrides() -> None:
    result = mest("ray", "config", "basic_app:app", "--replicas", "3", "--max-ongoing-requests", "40",
                  "--num-cpus", "0.5")
    assert result.returncode == 0, result.stderr
    (application,) = yaml.safe_load(result.stdout)["applications"]
    (deployment,) = application["deployments"]
    assert deployment["num_replicas"] == 3
    assert deployment["max_ongoing_requests"] == 40 and application["args"]["threads"] == 40
    assert deployment["ray_actor_options"] == {"num_cpus": 0.5}


@pytest.mark.parametrize(("args", "message"), [
    (("--replicas", "2", "--autoscale", "1:2"), "exclude each other"),
    (("--autoscale", "3:1"), "MIN:MAX"),
    (("--autoscaling-option", "x=1"), "needs --autoscale"),
])
def test_invalid_scaling_is_a_usage_error(args: tuple[str, ...], message: str) -> None:
    result = mest("ray", "config", "basic_app:app", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unknown_app_is_a_clear_error() -> None:
    result = mest("ray", "config", "no_such_module:app")
    assert result.returncode == 1
    assert "no_such_module" in result.stderr and "Traceback" not in result.stderr


def test_ongoing_requests_follow_batching() -> None:
    floor, big, at_floor = in_ray_process(
        "from mest.deploy.ray import MIN_ONGOING, ongoing_requests_for as f\n"
        "print([f(1), f(64), f(MIN_ONGOING) // MIN_ONGOING])"
    )
    assert floor > 5  # above Ray's default of 5
    assert big == 128  # two batches' worth
    assert at_floor == 2


def test_replica_health_is_readiness(tmp_path: Path) -> None:
    (tmp_path / "ray_broken_app.py").write_text(BROKEN_APP)
    code = (
        "import json\n"
        "from mest.deploy.ray import MestReplica\n"
        f"MestReplica('basic_app:app', {str(APPS_DIR)!r}, threads=4).check_health()\n"
        f"broken = MestReplica('ray_broken_app:app', {str(tmp_path)!r}, threads=4)\n"
        "try:\n"
        "    broken.check_health()\n"
        "except RuntimeError as exc:\n"
        "    print(json.dumps(str(exc)))\n"
        "else:\n"
        "    print(json.dumps(None))\n"
    )
    message = in_ray_process(code)
    assert message is not None and "503" in message
