"""``mest ray config`` and the replica class, without a cluster: the Serve config passes Ray's own schema, the
deployment options follow batching, and a replica's health is the app's readiness.

The cluster tests are in ``test_deploy_ray.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("a2wsgi")
yaml = pytest.importorskip("yaml")

from ray.serve.schema import ServeDeploySchema  # noqa: E402

from mest.deploy import ray as mest_ray  # noqa: E402
from support.servers import APPS_DIR  # noqa: E402

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


def test_config_passes_rays_schema() -> None:
    result = mest("ray", "config", "batching_app:app", "--autoscale", "1:3", "--autoscaling-option",
                  "target_ongoing_requests=4", "--host", "0.0.0.0", "--port", "8123", "--working-dir", ".")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    schema = ServeDeploySchema.model_validate(config) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(config)
    (application,) = schema.applications
    assert application.import_path == "mest.deploy.ray:build"
    expected = mest_ray.ongoing_requests_for(8)  # batching_app's largest max_batch_size
    assert application.args == {"app": "batching_app:app", "threads": expected}
    (deployment,) = application.deployments
    assert deployment.name == mest_ray.DEPLOYMENT_NAME
    assert deployment.max_ongoing_requests == expected
    assert deployment.autoscaling_config == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4}
    assert schema.http_options.port == 8123
    assert application.runtime_env["working_dir"] == f"local://{APPS_DIR}"


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
    assert mest_ray.ongoing_requests_for(1) == mest_ray.MIN_ONGOING > 5  # above Ray's default of 5
    assert mest_ray.ongoing_requests_for(64) == 128  # two batches' worth
    assert mest_ray.ongoing_requests_for(mest_ray.MIN_ONGOING) == 2 * mest_ray.MIN_ONGOING


def test_replica_health_is_readiness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ray_broken_app.py").write_text(BROKEN_APP)
    healthy = mest_ray.MestReplica("basic_app:app", str(APPS_DIR), threads=4)
    healthy.check_health()
    broken = mest_ray.MestReplica("ray_broken_app:app", str(tmp_path), threads=4)
    with pytest.raises(RuntimeError, match="503"):
        broken.check_health()
