"""``mest k8s``: every object validated offline, and probes, ports and the grace period checked against the app.

Kubernetes objects go through ``kubernetes-validate --strict`` (unknown fields rejected) against a pinned
Kubernetes version; KServe objects through ``jsonschema`` against the ``openAPIV3Schema`` of KServe's CRDs
(``tests/schemas/kserve``, a copy of KServe's ``config/crd/full``), made strict the same way.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

from support.servers import APPS_DIR  # noqa: E402

KUBERNETES_VERSION = "1.33.0"
TIMEOUT_S = 120
KSERVE_CRDS = Path(__file__).resolve().parent / "schemas" / "kserve"
VALIDATE = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))

CUSTOM_APP = '''
from mest import Mest
from mest.predictors import PredictorBase


class Echo(PredictorBase):
    def infer(self, processed_data):
        return processed_data


app = Mest(health_live_path="/alive", health_ready_path="/ready", metrics_path="/prom")
app.add_inference_handler(Echo(), "/echo")
'''

NO_READY_APP = '''
from mest import Mest

app = Mest(health_ready_path=None, metrics_path=None)
'''


def mest_k8s(context: Path, app: str, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "mest", "k8s", app, *args], cwd=context, capture_output=True,
                            text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    (context / "out.yaml").write_text(result.stdout)
    return list(yaml.safe_load_all(result.stdout))


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    assert VALIDATE is not None, "kubernetes-validate is not installed (pip install kubernetes-validate)"
    return subprocess.run([VALIDATE, "--strict", "--kubernetes-version", KUBERNETES_VERSION, str(path)],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "custom_app.py").write_text(CUSTOM_APP)
    (tmp_path / "no_ready_app.py").write_text(NO_READY_APP)
    shutil.copy(APPS_DIR / "basic_app.py", tmp_path / "basic_app.py")
    return tmp_path


def test_kubernetes_objects_pass_strict_validation(context: Path) -> None:
    objects = mest_k8s(context, "custom_app:app", "--image", "registry.example/mest-app:1.0", "--replicas", "3")
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    result = kubernetes_validate(context / "out.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") + result.stderr.count("passed") == 4


def test_strict_validation_can_fail(context: Path) -> None:
    """The check above can fail: a misspelt field in the generated Deployment is rejected."""
    objects = mest_k8s(context, "custom_app:app", "--image", "img:1")
    objects[0]["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    (context / "bad.yaml").write_text(yaml.safe_dump_all(objects))
    assert kubernetes_validate(context / "bad.yaml").returncode != 0


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _port_of(container: dict[str, Any], port: int | str) -> int:
    """The container port a probe's ``port`` names (by name or number); fails if it names none."""
    for declared in container["ports"]:
        if port in (declared.get("name"), declared["containerPort"]):
            return int(declared["containerPort"])
    raise AssertionError(f"probe port {port!r} is not a port of the container: {container['ports']}")


def test_deployment_follows_the_apps_settings(context: Path) -> None:
    objects = by_kind(mest_k8s(context, "custom_app:app", "--image", "img:1", "--graceful-timeout", "45"))
    deployment = objects["Deployment"]
    container = _container(deployment)
    env = {e["name"]: e["value"] for e in container["env"]}
    # The server listens on PORT; every probe and the Service target that same port.
    listening = int(env["PORT"])
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/alive"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert _port_of(container, container[probe]["httpGet"]["port"]) == listening
    assert _port_of(container, objects["Service"]["spec"]["ports"][0]["targetPort"]) == listening
    # The grace period outlasts mest serve's drain, which reads MEST_GRACEFUL_TIMEOUT.
    assert env["MEST_GRACEFUL_TIMEOUT"] == "45"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 45
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(listening),
                           "prometheus.io/path": "/prom"}
    assert container["resources"]["requests"].keys() == {"cpu", "memory"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_selectors_match_the_pods(context: Path) -> None:
    objects = by_kind(mest_k8s(context, "basic_app:app", "--image", "img:1", "--replicas", "2",
                               "--max-replicas", "6", "--name", "iris"))
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (objects["Deployment"]["spec"]["selector"]["matchLabels"],
                     objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     objects["Service"]["spec"]["selector"]):
        assert selector.items() <= labels.items()
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert {o["metadata"]["name"] for o in objects.values()} == {"iris"}
    # The default probes are Mest's default health paths.
    container = _container(objects["Deployment"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_without_readiness_or_metrics(context: Path) -> None:
    objects = by_kind(mest_k8s(context, "no_ready_app:app", "--image", "img:1"))
    container = _container(objects["Deployment"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/live"
    assert "annotations" not in objects["Deployment"]["spec"]["template"]["metadata"]
    assert kubernetes_validate(context / "out.yaml").returncode == 0


# -- KServe ----------------------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever it lists properties (the API server's strict mode)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def kserve_validator(kind: str, api_version: str) -> Any:
    crd_file = {"ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
                "InferenceService": "serving.kserve.io_inferenceservices.yaml"}[kind]
    crd = yaml.safe_load((KSERVE_CRDS / crd_file).read_text())
    version = api_version.split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    # metadata is an opaque object in a CRD schema: check it is one, with a name.
    schema["properties"]["metadata"] = {"type": "object", "required": ["name"]}
    return jsonschema.Draft7Validator(schema)


def validate_kserve(obj: dict[str, Any]) -> list[str]:
    validator = kserve_validator(obj["kind"], obj["apiVersion"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_kserve_objects_match_the_crds(context: Path) -> None:
    objects = mest_k8s(context, "custom_app:app", "--image", "img:1", "--kserve", "--model-repository",
                       "--storage-uri", "s3://bucket/models")
    assert [o["kind"] for o in objects] == ["ServingRuntime", "InferenceService"]
    for obj in objects:
        assert validate_kserve(obj) == []


def test_kserve_validation_can_fail(context: Path) -> None:
    runtime, service = mest_k8s(context, "custom_app:app", "--image", "img:1", "--kserve")
    runtime["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    service["spec"]["predictor"]["minReplicas"] = "two"
    assert validate_kserve(runtime) and validate_kserve(service)


def test_kserve_runtime_and_service_fit_together(context: Path) -> None:
    runtime, service = mest_k8s(context, "custom_app:app", "--image", "img:1", "--kserve", "--model-repository",
                                "--storage-uri", "pvc://models/iris", "--graceful-timeout", "20")
    spec = runtime["spec"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PORT"] == "8080"
    assert container["args"] == ["--model-repository", "/mnt/models"]
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/alive")):
        assert container[probe]["httpGet"] == {"path": path, "port": 8080}
    assert spec["protocolVersions"] == ["v2"]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in spec["supportedModelFormats"]}
    assert model["protocolVersion"] == "v2" and model["storageUri"] == "pvc://models/iris"
    assert service["spec"]["predictor"]["terminationGracePeriodSeconds"] > 20


def test_kserve_without_a_model_repository_passes_no_arguments(context: Path) -> None:
    runtime, service = mest_k8s(context, "basic_app:app", "--image", "img:1", "--kserve")
    assert "args" not in runtime["spec"]["containers"][0]
    assert "storageUri" not in service["spec"]["predictor"]["model"]


@pytest.mark.parametrize(("args", "message"), [
    (("--image", "img:1", "--name", "Not_A_Name"), "DNS-1123"),
    (("--image", "img:1", "--replicas", "3", "--max-replicas", "2"), "max_replicas"),
])
def test_invalid_options_are_clear_errors(context: Path, args: tuple[str, ...], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "mest", "k8s", "basic_app:app", *args], cwd=context,
                            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
