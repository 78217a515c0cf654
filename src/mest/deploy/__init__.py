"""Beyond one machine: a container image for ``mest serve``, and Kubernetes and KServe manifests for it.

``mest dockerfile`` and ``mest k8s`` are the commands; these are the functions behind them, for scripts that
generate deployment files themselves (docs/deploy.md).
"""

from ._dockerfile import DockerfileOptions, dockerfile, dockerignore
from ._k8s import K8sOptions, kserve_manifests, kubernetes_manifests

__all__ = [
    "DockerfileOptions",
    "K8sOptions",
    "dockerfile",
    "dockerignore",
    "kserve_manifests",
    "kubernetes_manifests",
]
