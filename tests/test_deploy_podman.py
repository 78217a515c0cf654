"""The image ``mest dockerfile`` describes, built and run for real with podman (no Docker daemon, no registry).

The base image is made here: ``debootstrap`` a minimal Debian with python3 into a folder (once per test
session; set ``MEST_TEST_ROOTFS`` to a folder to keep it between sessions) and ``podman import`` it. Mest is
installed in the image from a wheel built from this checkout, its other dependencies from the package index
(``podman build --network host``). The container runs with its port published on 127.0.0.1 only; podman's
storage and configuration live in a temporary folder, removed at the end with every image and container.

Skips, with the reason, only where it cannot run: not root, or podman/debootstrap missing
(``scripts/install-system-deps`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.servers import APPS_DIR

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/mest-test-base:bookworm"
IMAGE = "localhost/mest-test-app:latest"
BUILD_TIMEOUT_S = 900
START_TIMEOUT_S = 120

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(os.geteuid() != 0, reason="podman and debootstrap need root here"),
    pytest.mark.skipif(shutil.which("podman") is None or shutil.which("debootstrap") is None,
                       reason="podman/debootstrap missing: run scripts/install-system-deps as root"),
]


class Podman:
    """podman with its own storage and configuration (containers.md: runc, cgroupfs, no systemd)."""

    def __init__(self, home: Path) -> None:
        hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True, check=True).stdout.strip()
        nofile = hard if hard.isdigit() else "65536"
        (home / "containers.conf").write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        (home / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{home / "graph"}"\nrunroot = "{home / "run"}"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(home / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(home / "storage.conf")}

    def __call__(self, *args: str, timeout: float = 120, check: bool = True,
                 stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["podman", *args], env=self.env, capture_output=True, timeout=timeout,
                                input=stdin, check=False)
        completed = subprocess.CompletedProcess(result.args, result.returncode,
                                                result.stdout.decode(errors="replace"),
                                                result.stderr.decode(errors="replace"))
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{completed.stdout}\n{completed.stderr}")
        return completed


def _rootfs(scratch: Path) -> tuple[Path, bool]:
    """A debootstrapped Debian with python3 and venv; ``(folder, keep)`` (kept when MEST_TEST_ROOTFS names it)."""
    kept = os.environ.get("MEST_TEST_ROOTFS")
    rootfs = Path(kept) if kept else scratch / "rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
             "bookworm", str(rootfs), "http://deb.debian.org/debian"],
            check=True, capture_output=True, timeout=BUILD_TIMEOUT_S,
        )
    # The machine's own CAs (a proxy's, here) so pip in the build can verify the package index.
    extra = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for cert in extra:
        shutil.copy(cert, rootfs / "usr" / "local" / "share" / "ca-certificates" / cert.name)
    if extra:
        subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True,
                       timeout=120)
    return rootfs, bool(kept)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman with the debootstrapped base image imported; everything removed afterwards."""
    scratch = tmp_path_factory.mktemp("podman")
    home = scratch / "home"
    home.mkdir()
    tool = Podman(home)
    rootfs, keep = _rootfs(scratch)
    try:
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True, timeout=300)
        tool("import", "-", BASE_IMAGE, stdin=tar.stdout, timeout=300)
        yield tool
    finally:
        tool("rm", "-a", "-f", check=False)
        tool("rmi", "-a", "-f", check=False, timeout=300)
        # Overlay mounts podman may still hold must go before the folder can be removed.
        subprocess.run(["umount", "-R", str(home / "graph" / "overlay")], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
        if not keep:
            shutil.rmtree(rootfs, ignore_errors=True)


@pytest.fixture(scope="session")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The generated Dockerfile built with a Mest wheel from this checkout."""
    context = tmp_path_factory.mktemp("context")
    shutil.copy(APPS_DIR / "basic_app.py", context / "basic_app.py")
    (context / "models").mkdir()
    (context / "models" / "weights.txt").write_text("42\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(context / "dist"),
                    str(ROOT)], check=True, capture_output=True, timeout=BUILD_TIMEOUT_S)
    (wheel,) = (context / "dist").glob("mest-*.whl")
    generated = subprocess.run(
        [sys.executable, "-m", "mest", "dockerfile", "basic_app:app", "--base-image", BASE_IMAGE,
         "--wheel", f"dist/{wheel.name}", "--models", "models"],
        cwd=context, capture_output=True, text=True, timeout=120, check=False,
    )
    assert generated.returncode == 0, generated.stderr
    podman("build", "--network", "host", "--format", "docker", "-t", IMAGE, str(context),
           timeout=BUILD_TIMEOUT_S)
    return IMAGE


@contextlib.contextmanager
def container(podman: Podman, image: str) -> Iterator[tuple[str, str]]:
    """Run ``image`` detached, its port published on an ephemeral 127.0.0.1 port; yield (name, URL)."""
    name = f"mest-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "-p", "127.0.0.1::8080", image)
    try:
        port = podman("port", name, "8080").stdout.strip().rsplit(":", 1)[1]
        yield name, f"http://127.0.0.1:{port}"
    finally:
        podman("rm", "-f", name, check=False)


def _wait(condition: object, what: str, podman: Podman, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(httpx.TransportError):
            if callable(condition) and condition():
                return
        if time.monotonic() > deadline:
            logs = podman("logs", name, check=False)
            raise AssertionError(f"timed out waiting for {what}:\n{logs.stdout}\n{logs.stderr}")
        time.sleep(0.5)


def test_image_serves_is_healthy_and_stops_cleanly(podman: Podman, image: str) -> None:
    with container(podman, image) as (name, url):
        _wait(lambda: httpx.get(url + "/health/ready", timeout=5).status_code == 200, "readiness", podman, name)
        answer = httpx.post(url + "/sum", json={"id": "c", "features": [1, 2, 3.5]}, timeout=30)
        assert answer.status_code == 200
        assert answer.json()["sum"] == 6.5
        bad = httpx.post(url + "/sum", content=b"{not json", headers={"Content-Type": "application/json"},
                         timeout=30)
        assert bad.status_code == 400 and "request_id" in bad.json()
        # The image's own HEALTHCHECK, run by podman (no systemd timer here, so we trigger it).
        _wait(lambda: podman("healthcheck", "run", name, check=False).returncode == 0, "healthy", podman, name)
        assert podman("inspect", name, "--format", "{{.State.Health.Status}}").stdout.strip() == "healthy"
        # Non-root, numeric; mest serve (gunicorn's master) is PID 1, so SIGTERM reaches it.
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        cmdline = podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert "mest" in Path(cmdline[1]).name and "serve" in cmdline
        assert podman("exec", name, "cat", "/models/weights.txt").stdout == "42\n"
        # podman stop sends the image's STOPSIGNAL (SIGTERM) and SIGKILLs only after 30 s: exit 0 means
        # gunicorn drained and exited by itself.
        podman("stop", "-t", "30", name, timeout=90)
        state = podman("inspect", name, "--format", "{{.State.ExitCode}} {{.State.Status}}").stdout.split()
        assert state == ["0", "exited"]
        assert "Shutting down: Master" in podman("logs", name).stdout + podman("logs", name).stderr


def test_port_comes_from_PORT(podman: Podman, image: str) -> None:
    """A platform that sets PORT (Cloud Run, Knative) gets the server on that port."""
    name = f"mest-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "-e", "PORT=9123", "-p", "127.0.0.1::9123", image)
    try:
        port = podman("port", name, "9123").stdout.strip().rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(url + "/health/live", timeout=5).status_code == 200, "liveness", podman, name)
        _wait(lambda: podman("healthcheck", "run", name, check=False).returncode == 0, "healthy", podman, name)
    finally:
        podman("rm", "-f", name, check=False)
