"""A Dockerfile and a .dockerignore that run a Mest app under ``mest serve`` in a container.

The file is generated rather than templated by hand so each choice a container needs stays in one place:
dependencies in their own layer before the code (a code change rebuilds only the last layers), model files in
their own layer, a non-root numeric user (Kubernetes' ``runAsNonRoot`` can check a number, not a name), an
exec-form entrypoint so ``SIGTERM`` reaches ``mest serve`` (gunicorn drains in-flight requests), and a
``HEALTHCHECK`` written with Python's standard library because slim images have no curl.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ["CONTAINER_PORT", "CONTAINER_UID", "MODELS_DIR", "DockerfileOptions", "dockerfile", "dockerignore"]

#: The port the image listens on unless ``PORT`` says otherwise (KServe requires 8080).
CONTAINER_PORT = 8080
#: The non-root user and group the image runs as.
CONTAINER_UID = 10001
#: Where model files are copied in the image (KServe mounts its models at /mnt/models instead).
MODELS_DIR = "/models"

_EXTRA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PYTHON = re.compile(r"3\.\d{1,2}")


@dataclass(frozen=True)
class DockerfileOptions:
    """What ``mest dockerfile`` writes; every path is relative to the build context (the Dockerfile's folder).

    Attributes:
        app: The app spec, ``module:attribute``.
        code: Files and folders of the app to copy (the app's module or package, and anything else it reads).
        base_image: The image to build from; ``None``: ``python:<python_version>-slim``.
        python_version: The Python of the default base image.
        extras: Mest extras to install (``gunicorn`` is always installed: ``mest serve`` needs it).
        requirements: A requirements file with the app's own (pinned) dependencies.
        models: A folder of model files, copied to :data:`MODELS_DIR` in its own layer.
        model_repository: Serve ``models`` as a model repository (``mest serve --model-repository``).
        wheel: A Mest wheel to install instead of Mest from the package index (to build from a checkout).
        version: The Mest version pinned when ``wheel`` is not given.
        health_path: The path the ``HEALTHCHECK`` polls (the app's readiness); ``None``: no health check.
        graceful_timeout: Seconds ``mest serve`` gives in-flight requests on ``SIGTERM``.
    """

    app: str
    code: tuple[str, ...]
    base_image: str | None = None
    python_version: str = "3.12"
    extras: tuple[str, ...] = ()
    requirements: str | None = None
    models: str | None = None
    model_repository: bool = False
    wheel: str | None = None
    version: str = "0.1.0"
    health_path: str | None = "/health/ready"
    graceful_timeout: int = 30

    def __post_init__(self) -> None:
        if not _PYTHON.fullmatch(self.python_version):
            raise ValueError(f"python_version must look like 3.12, got {self.python_version!r}")
        for extra in self.extras:
            if not _EXTRA.fullmatch(extra):
                raise ValueError(f"not an extra name: {extra!r}")
        if self.model_repository and self.models is None:
            raise ValueError("a model repository needs the folder of models to copy")
        for path in (*self.code, self.requirements, self.models, self.wheel):
            if path is not None and (PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts):
                raise ValueError(f"{path!r} must be a path inside the build context")
        if not self.code:
            raise ValueError("nothing to copy: name the app's module or package")


def _json(argv: list[str]) -> str:
    # Exec form is a JSON array; json.dumps quotes exactly as Docker parses it.
    return json.dumps(argv)


def _healthcheck(path: str) -> str:
    # Exits 0 only on a 2xx from readiness: a 503 (a model still loading or failed) raises HTTPError.
    probe = (
        "import os,urllib.request;"
        f"urllib.request.urlopen('http://127.0.0.1:'+os.environ.get('PORT','{CONTAINER_PORT}')+'{path}',timeout=4)"
    )
    timing = "--interval=10s --timeout=5s --start-period=60s --retries=3"
    return f"HEALTHCHECK {timing} \\\n    CMD {_json(['python', '-c', probe])}"


def _install(options: DockerfileOptions) -> list[str]:
    extras = ",".join(sorted({"gunicorn", *options.extras}))
    lines: list[str] = []
    if options.wheel is not None:
        wheel = PurePosixPath(options.wheel).name
        lines.append(f"COPY {options.wheel} /tmp/wheels/{wheel}")
        mest = f"/tmp/wheels/{wheel}[{extras}]"
    else:
        mest = f"mest[{extras}]=={options.version}"
    args = [f'"{mest}"']
    if options.requirements is not None:
        lines.append(f"COPY {options.requirements} /tmp/requirements.txt")
        args += ["-r", "/tmp/requirements.txt"]
    lines.append(f"RUN python3 -m venv /opt/venv \\\n    && pip install --no-cache-dir {' '.join(args)}")
    return lines


def dockerfile(options: DockerfileOptions) -> str:
    """The Dockerfile's text for ``options``.

    Args:
        options: What to build.

    Returns:
        The Dockerfile, ending with a newline.
    """
    base = options.base_image or f"python:{options.python_version}-slim"
    uid = CONTAINER_UID
    serve = f'exec mest serve {options.app} --host 0.0.0.0 --port "${{PORT}}" "$@"'
    if options.model_repository:
        serve = serve.replace(' "$@"', f' --model-repository {MODELS_DIR} "$@"')
    lines = [
        "# Generated by `mest dockerfile`: edit freely, or regenerate. Build: docker build -t IMAGE .",
        f"FROM {base}",
        "",
        "ENV PYTHONDONTWRITEBYTECODE=1 \\\n    PYTHONUNBUFFERED=1 \\\n    PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        f"    PORT={CONTAINER_PORT} \\\n    MEST_GRACEFUL_TIMEOUT={options.graceful_timeout} \\",
        '    PATH="/opt/venv/bin:$PATH"',
        "",
        "# Dependencies first, in their own layer: rebuilt only when they change, not when the code does;",
        "# in a virtual environment: the same layout on python:*-slim and on a distribution's own Python.",
        *_install(options),
        "",
        "# A numeric non-root user owning its working directory (gunicorn writes its control socket there).",
        f"RUN groupadd --system --gid {uid} mest \\\n"
        f"    && useradd --system --no-log-init --uid {uid} --gid {uid} --home-dir /app \\\n"
        "       --shell /usr/sbin/nologin mest \\\n"
        f"    && mkdir -p /app && chown {uid}:{uid} /app",
        "WORKDIR /app",
    ]
    if options.models is not None:
        lines += ["", "# Model files in their own layer, read-only to the server.",
                  f"COPY {options.models.rstrip('/')}/ {MODELS_DIR}/"]
    lines += ["", "# The app's code last: the layer that changes most."]
    lines += [f"COPY --chown={uid}:{uid} {path} /app/{path}" for path in options.code]
    lines += [
        "",
        f"USER {uid}:{uid}",
        f"EXPOSE {CONTAINER_PORT}",
        "STOPSIGNAL SIGTERM",
    ]
    if options.health_path is not None:
        lines.append(_healthcheck(options.health_path))
    lines += [
        "# `exec` makes mest serve PID 1, so SIGTERM (docker stop, Kubernetes) reaches it and it drains;",
        "# the shell is there only to read PORT. Arguments after the image name go to mest serve.",
        f"ENTRYPOINT {_json(['/bin/sh', '-c', serve, 'mest-serve'])}",
        "CMD []",
    ]
    return "\n".join(lines) + "\n"


def dockerignore(options: DockerfileOptions) -> str:
    """The .dockerignore for ``options``: keeps caches, virtual environments and VCS data out of the context."""
    lines = [
        "# Generated by `mest dockerfile`.",
        ".git", ".hg", ".venv", "venv", "env", "**/__pycache__", "**/*.py[cod]",
        ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox", "*.egg-info",
        "build", "Dockerfile", ".dockerignore",
    ]
    if options.wheel is None or not options.wheel.startswith("dist/"):
        lines.append("dist")
    return "\n".join(lines) + "\n"
