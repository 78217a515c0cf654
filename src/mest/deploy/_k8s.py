"""Kubernetes manifests for a Mest image: Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget,
and for KServe a ServingRuntime plus an InferenceService.

Plain dictionaries, one function per object, so a test can validate each against its schema and a user can
read what every field is for. The probes, port, metrics path and grace period come from the app's own
settings (:class:`K8sOptions` is filled from them by ``mest k8s``), so a manifest cannot drift from the app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._dockerfile import CONTAINER_PORT, CONTAINER_UID

__all__ = ["KSERVE_MODELS_DIR", "K8sOptions", "kserve_manifests", "kubernetes_manifests"]

#: Where KServe's storage initializer puts a model's files in the serving container.
KSERVE_MODELS_DIR = "/mnt/models"
#: Extra seconds Kubernetes waits after the graceful timeout before SIGKILL: endpoints removal and the
#: drain's own bookkeeping take a moment, and a SIGKILL mid-drain would lose the requests being drained.
GRACE_MARGIN_S = 15

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

Manifest = dict[str, Any]


@dataclass(frozen=True)
class K8sOptions:
    """What ``mest k8s`` generates.

    Attributes:
        name: The objects' name (a DNS-1123 label).
        image: The container image (built from ``mest dockerfile``'s Dockerfile).
        replicas: Replicas of the Deployment, and the autoscaler's minimum.
        max_replicas: The autoscaler's maximum.
        target_cpu: Average CPU utilisation (percent of the request) the autoscaler keeps.
        cpu: CPU request per pod (Kubernetes quantity).
        memory: Memory request and limit per pod (the limit stops one leaking pod from starving a node).
        live_path: The app's liveness path; ``None`` if switched off (no liveness probe then).
        ready_path: The app's readiness path; ``None`` if switched off (the liveness path is used instead).
        metrics_path: The app's Prometheus path; ``None``: no scrape annotations.
        graceful_timeout: ``mest serve``'s graceful timeout; the pod's grace period is longer.
        startup_timeout: Seconds a pod may take to become ready (model loading) before it is restarted.
        namespace: The objects' namespace; ``None``: whatever ``kubectl`` uses.
        model_repository: KServe: serve the mounted models as a model repository.
        storage_uri: KServe: where the InferenceService's model files come from (``s3://``, ``gs://``, ``pvc://``).
    """

    name: str
    image: str
    replicas: int = 2
    max_replicas: int = 4
    target_cpu: int = 70
    cpu: str = "1"
    memory: str = "1Gi"
    live_path: str | None = "/health/live"
    ready_path: str | None = "/health/ready"
    metrics_path: str | None = "/metrics"
    graceful_timeout: int = 30
    startup_timeout: int = 300
    namespace: str | None = None
    model_repository: bool = False
    storage_uri: str | None = None

    def __post_init__(self) -> None:
        if len(self.name) > 63 or not _NAME.fullmatch(self.name):
            raise ValueError(f"name must be a DNS-1123 label (lowercase letters, digits, '-'), got {self.name!r}")
        if self.replicas < 1 or self.max_replicas < self.replicas:
            raise ValueError(f"need 1 <= replicas <= max_replicas, got {self.replicas} and {self.max_replicas}")
        if not 1 <= self.target_cpu <= 100:
            raise ValueError(f"target_cpu is a percentage, got {self.target_cpu}")
        if not self.image:
            raise ValueError("an image is required")


def _metadata(options: K8sOptions, name: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or options.name, "labels": _labels(options)}
    if options.namespace is not None:
        meta["namespace"] = options.namespace
    meta.update(extra)
    return meta


def _labels(options: K8sOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": options.name, "app.kubernetes.io/managed-by": "mest"}


def _probe(path: str, port: int | str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _probes(options: K8sOptions, port: int | str) -> dict[str, Any]:
    ready = options.ready_path or options.live_path
    probes: dict[str, Any] = {}
    if ready is not None:
        # Startup: model setup may take minutes; liveness only starts once this has succeeded.
        period = 5
        probes["startupProbe"] = _probe(ready, port, period, max(1, -(-options.startup_timeout // period)))
        probes["readinessProbe"] = _probe(ready, port, period, 2)
    if options.live_path is not None:
        probes["livenessProbe"] = _probe(options.live_path, port, 10, 3)
    return probes


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": CONTAINER_UID,
        "runAsGroup": CONTAINER_UID,
    }


def _resources(options: K8sOptions) -> dict[str, Any]:
    return {"requests": {"cpu": options.cpu, "memory": options.memory}, "limits": {"memory": options.memory}}


def _env(options: K8sOptions) -> list[dict[str, str]]:
    return [
        {"name": "PORT", "value": str(CONTAINER_PORT)},
        {"name": "MEST_GRACEFUL_TIMEOUT", "value": str(options.graceful_timeout)},
    ]


def _scrape_annotations(options: K8sOptions) -> dict[str, str]:
    if options.metrics_path is None:
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(CONTAINER_PORT),
            "prometheus.io/path": options.metrics_path}


def deployment(options: K8sOptions) -> Manifest:
    """The Deployment: probes on Mest's health endpoints, a locked-down container, a grace period past the drain."""
    container: dict[str, Any] = {
        "name": "mest",
        "image": options.image,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _env(options),
        "resources": _resources(options),
        **_probes(options, "http"),
        "securityContext": _security_context(),
    }
    template_meta: dict[str, Any] = {"labels": _labels(options)}
    if annotations := _scrape_annotations(options):
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": options.name}},
            # Never fewer ready pods than asked for during a rollout.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "terminationGracePeriodSeconds": options.graceful_timeout + GRACE_MARGIN_S,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": CONTAINER_UID,
                        "runAsGroup": CONTAINER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }


def service(options: K8sOptions) -> Manifest:
    """A ClusterIP Service in front of the pods' ``http`` port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": options.name},
            "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(options: K8sOptions) -> Manifest:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler on average CPU utilisation (inference is CPU-bound)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(options),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": options.name},
            "minReplicas": options.replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": options.target_cpu},
                },
            }],
        },
    }


def disruption_budget(options: K8sOptions) -> Manifest:
    """A PodDisruptionBudget: a node drain takes one pod at a time (``maxUnavailable: 1`` works with one replica,
    where ``minAvailable: 1`` would block the drain forever)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(options),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": options.name}},
        },
    }


def kubernetes_manifests(options: K8sOptions) -> list[Manifest]:
    """Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget for ``options``."""
    return [deployment(options), service(options), autoscaler(options), disruption_budget(options)]


def serving_runtime(options: K8sOptions) -> Manifest:
    """A KServe ServingRuntime: the Mest image as ``kserve-container`` on port 8080, speaking the V2 protocol."""
    args = ["--model-repository", KSERVE_MODELS_DIR] if options.model_repository else []
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": options.image,
        "ports": [{"containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _env(options),
        "resources": _resources(options),
        # KServe names the port itself (Knative's "http1"): the probes use its number.
        **_probes(options, CONTAINER_PORT),
        "securityContext": _security_context(),
    }
    if args:
        container["args"] = args
    spec: dict[str, Any] = {
        "supportedModelFormats": [{"name": "mest", "version": "1", "autoSelect": True}],
        "protocolVersions": ["v2"],
        "containers": [container],
    }
    if annotations := _scrape_annotations(options):
        spec["annotations"] = annotations
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": _metadata(options, f"{options.name}-runtime"),
        "spec": spec,
    }


def inference_service(options: K8sOptions) -> Manifest:
    """A KServe InferenceService whose predictor runs on :func:`serving_runtime`."""
    model: dict[str, Any] = {
        "modelFormat": {"name": "mest"},
        "runtime": f"{options.name}-runtime",
        "protocolVersion": "v2",
    }
    if options.storage_uri is not None:
        model["storageUri"] = options.storage_uri
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(options),
        "spec": {
            "predictor": {
                "minReplicas": options.replicas,
                "maxReplicas": options.max_replicas,
                "terminationGracePeriodSeconds": options.graceful_timeout + GRACE_MARGIN_S,
                "model": model,
            },
        },
    }


def kserve_manifests(options: K8sOptions) -> list[Manifest]:
    """ServingRuntime and InferenceService for ``options``."""
    return [serving_runtime(options), inference_service(options)]
