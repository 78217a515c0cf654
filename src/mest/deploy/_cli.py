"""``mest dockerfile`` and ``mest k8s``: deployment files generated from the app's own settings.

Both commands import the app (as ``mest routes`` does) to read its health, metrics and batching settings, so
the health check and the probes poll the paths the app really serves. Registered on the ``mest`` group by
:mod:`mest.cli`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..config import ConfigError
from ..server.loader import AppLoadError, load_app, split_spec
from ..server.options import ServeOptions
from ._dockerfile import DockerfileOptions, dockerfile, dockerignore
from ._k8s import K8sOptions, kserve_manifests, kubernetes_manifests

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["dockerfile_command", "k8s_command"]

# What an app spec may contain to be put in the entrypoint's shell line unquoted.
_SAFE_SPEC = re.compile(r"[A-Za-z0-9_./:-]+")


@contextlib.contextmanager
def _user_errors(spec: str) -> Iterator[None]:
    try:
        yield
    except click.ClickException:
        raise
    except (AppLoadError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigError as exc:
        raise click.ClickException(f"Invalid configuration: {exc}") from None
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        raise click.ClickException(f"Importing {spec} failed: {type(exc).__name__}: {exc}") from None


def _settings(spec: str) -> Settings:
    # Whatever the module prints while it is imported goes to stderr: stdout is for the manifests.
    with _user_errors(spec), contextlib.redirect_stdout(sys.stderr):
        return load_app(spec).settings


def _inside(path: str, what: str) -> str:
    """``path`` relative to the build context (the current directory), as a POSIX path; it must exist there."""
    resolved = Path(path).resolve()
    try:
        relative = resolved.relative_to(Path.cwd().resolve())
    except ValueError:
        raise click.BadParameter(f"{path!r} is outside the build context {Path.cwd()}", param_hint=what) from None
    if not resolved.exists():
        raise click.BadParameter(f"{path!r} does not exist", param_hint=what)
    return relative.as_posix()


def _app_code(spec: str) -> str:
    """The module file or package folder of ``spec``, relative to the build context."""
    module, _attr, directory = split_spec(spec)
    if directory is not None:
        return _inside(spec.rpartition(":")[0] if ":" in spec else spec, "APP")
    top = module.split(".")[0]
    for candidate in (f"{top}.py", top):
        if Path(candidate).exists():
            return candidate + ("/" if Path(candidate).is_dir() else "")
    raise click.ClickException(
        f"{top}.py or {top}/ is not in the build context {Path.cwd()}: run `mest dockerfile` from the folder "
        "that holds the app (or add its files with --copy)."
    )


@click.command("dockerfile")
@click.argument("app", metavar="APP", envvar="MEST_APP")
@click.option("--base-image", default=None, show_default="python:VERSION-slim",
              help="Image to build FROM (any Debian-like image with python3 and its venv module).")
@click.option("--python-version", default="3.12", show_default=True, help="Python of the default base image.")
@click.option("--extra", "extras", multiple=True, help="A Mest extra to install (repeatable), e.g. granian.")
@click.option("--requirements", "-r", default=None, help="The app's requirements file (pin its versions).")
@click.option("--models", default=None, help="A folder of model files, copied to /models in its own layer.")
@click.option("--model-repository", is_flag=True, default=False,
              help="Serve the --models folder as a model repository (mest serve --model-repository /models).")
@click.option("--wheel", default=None,
              help="Install Mest from this wheel in the build context (e.g. built from a checkout with "
                   "`pip wheel --no-deps -w dist .`) instead of mest==VERSION from the package index.")
@click.option("--copy", "copies", multiple=True, help="Another file or folder the app needs (repeatable).")
@click.option("--graceful-timeout", envvar="MEST_GRACEFUL_TIMEOUT", default=ServeOptions.graceful_timeout,
              show_default=True,
              type=click.IntRange(min=0), help="Seconds in-flight requests get on SIGTERM.")
@click.option("--force", is_flag=True, default=False, help="Overwrite an existing Dockerfile/.dockerignore.")
def dockerfile_command(app: str, **flags: Any) -> None:
    """Write a Dockerfile and a .dockerignore for APP in the current directory (the build context).

    The image runs `mest serve APP` on 0.0.0.0, port $PORT (8080), as a non-root user, with a HEALTHCHECK on
    the app's readiness. Build it with `docker build -t IMAGE .` (or podman). See docs/deploy.md.
    """
    if not _SAFE_SPEC.fullmatch(app):
        raise click.BadParameter(f"{app!r}: use MODULE:ATTRIBUTE or a relative file path", param_hint="APP")
    settings = _settings(app)
    code = [_app_code(app), *(_inside(path, "--copy") for path in flags["copies"])]
    with _user_errors(app):
        options = DockerfileOptions(
            app=app,
            code=tuple(dict.fromkeys(code)),
            base_image=flags["base_image"],
            python_version=flags["python_version"],
            extras=tuple(flags["extras"]),
            requirements=flags["requirements"] and _inside(flags["requirements"], "--requirements"),
            models=flags["models"] and _inside(flags["models"], "--models"),
            model_repository=flags["model_repository"],
            wheel=flags["wheel"] and _inside(flags["wheel"], "--wheel"),
            version=__version__,
            health_path=settings.health_ready_path or settings.health_live_path,
            graceful_timeout=flags["graceful_timeout"],
        )
    files = {"Dockerfile": dockerfile(options), ".dockerignore": dockerignore(options)}
    existing = [name for name in files if Path(name).exists()]
    if existing and not flags["force"]:
        raise click.ClickException(f"{' and '.join(existing)} already exist(s): pass --force to overwrite.")
    for name, text in files.items():
        Path(name).write_text(text)
        click.echo(f"Wrote {name}", err=True)
    if options.health_path is None:
        click.echo("Warning: the app serves no health endpoint: the image has no HEALTHCHECK.", err=True)


def _default_name(spec: str) -> str:
    module, _attr, _directory = split_spec(spec)
    name = re.sub(r"[^a-z0-9-]+", "-", module.lower().replace("_", "-")).strip("-")
    return name[:63].rstrip("-") or "mest"


@click.command("k8s")
@click.argument("app", metavar="APP", envvar="MEST_APP")
@click.option("--image", required=True, help="The container image (built from `mest dockerfile`'s Dockerfile).")
@click.option("--name", default=None, show_default="the app's module name", help="The objects' name.")
@click.option("--namespace", default=None, help="The objects' namespace.")
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(min=1),
              help="Replicas, and the autoscaler's minimum.")
@click.option("--max-replicas", default=None, type=click.IntRange(min=1), show_default="2 x --replicas",
              help="The autoscaler's maximum.")
@click.option("--target-cpu", default=70, show_default=True, type=click.IntRange(1, 100),
              help="Average CPU utilisation (% of the request) the autoscaler aims for.")
@click.option("--cpu", default="1", show_default=True, help="CPU request per pod.")
@click.option("--memory", default="1Gi", show_default=True, help="Memory request and limit per pod.")
@click.option("--graceful-timeout", envvar="MEST_GRACEFUL_TIMEOUT", default=ServeOptions.graceful_timeout,
              show_default=True,
              type=click.IntRange(min=0), help="mest serve's graceful timeout; the pods' grace period is longer.")
@click.option("--startup-timeout", default=300, show_default=True, type=click.IntRange(min=1),
              help="Seconds a pod may take to become ready (model loading) before it is restarted.")
@click.option("--kserve", is_flag=True, default=False,
              help="Print a KServe ServingRuntime and InferenceService instead.")
@click.option("--model-repository", is_flag=True, default=False,
              help="KServe: serve the models KServe mounts at /mnt/models as a model repository.")
@click.option("--storage-uri", default=None, help="KServe: where the model files come from (s3://, gs://, pvc://).")
def k8s_command(app: str, **flags: Any) -> None:
    """Print Kubernetes manifests for APP's image: Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget.

    With --kserve: a ServingRuntime (V2 protocol) and an InferenceService. Probes, port, metrics annotations
    and the grace period follow the app's settings. Apply with `mest k8s ... | kubectl apply -f -`.
    """
    if importlib.util.find_spec("yaml") is None:
        raise click.ClickException("mest k8s needs PyYAML: pip install 'mest[k8s]'")
    import yaml

    settings = _settings(app)
    with _user_errors(app):
        options = K8sOptions(
            name=flags["name"] or _default_name(app),
            image=flags["image"],
            namespace=flags["namespace"],
            replicas=flags["replicas"],
            max_replicas=flags["max_replicas"] or 2 * flags["replicas"],
            target_cpu=flags["target_cpu"],
            cpu=flags["cpu"],
            memory=flags["memory"],
            live_path=settings.health_live_path,
            ready_path=settings.health_ready_path,
            metrics_path=settings.metrics_path,
            graceful_timeout=flags["graceful_timeout"],
            startup_timeout=flags["startup_timeout"],
            model_repository=flags["model_repository"],
            storage_uri=flags["storage_uri"],
        )
    manifests = kserve_manifests(options) if flags["kserve"] else kubernetes_manifests(options)
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)
