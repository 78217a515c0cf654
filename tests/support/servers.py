"""Start real servers (gunicorn, the dev server) on ephemeral loopback ports, and always stop them.

Servers bind port 0 and we read the port they got from their own start-up line, so there is no race for a
"free" port. Every process is started in its own session and ended by its PID (SIGTERM, then SIGKILL after
a deadline), so a failing test never leaves a server behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

APPS_DIR = Path(__file__).resolve().parent.parent / "apps"
_GUNICORN_LISTEN = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
_DEV_LISTEN = re.compile(r"Mest development server on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


@dataclass
class RunningServer:
    """A started server process: its URL, PID, and everything it has printed so far."""

    process: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    #: What runs the app: ``"dev"``, or gunicorn's worker class (``"sync"``, ``"gthread"``, ``"gevent"``).
    kind: str = ""
    _reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def wait_for_output(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            found = regex.search(self.output)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not printed within {timeout}s; output:\n{self.output}")


def _pump(server: RunningServer) -> None:
    stdout = server.process.stdout
    assert stdout is not None
    with stdout:  # closed here, by its only reader, once every process holding the pipe has exited
        for line in stdout:
            server.lines.append(line)


def stop(server: RunningServer, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
    """Signal the server's process (by PID) and wait for it; SIGKILL its session after ``timeout``."""
    proc = server.process
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Workers of a master that died abruptly: end the whole session we created.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if server._reader is not None:
        server._reader.join(5)  # everything the server printed is now in ``lines``
    return proc.returncode


@contextlib.contextmanager
def _launch(
    argv: Sequence[str], listen: re.Pattern[str], cwd: Path, env: dict[str, str] | None, kind: str
) -> Iterator[RunningServer]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = RunningServer(proc, kind=kind)
    server._reader = threading.Thread(target=_pump, args=(server,), daemon=True)
    server._reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            found = listen.search(server.output)
            if found:
                server.url = f"http://127.0.0.1:{found.group(1)}"
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {' '.join(argv)}\n{server.output}")
            time.sleep(0.05)
        _wait_until_serving(server)
        yield server
    finally:
        stop(server)


def _wait_until_serving(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            httpx.get(server.url + "/health/live", timeout=2.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server never answered at {server.url}\n{server.output}")


@contextlib.contextmanager
def gunicorn(
    app: str,
    *,
    worker_class: str = "sync",
    workers: int = 1,
    threads: int = 4,
    cwd: Path = APPS_DIR,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Run ``gunicorn app`` (e.g. ``"basic_app:app"``) on 127.0.0.1 with an ephemeral port."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-b",
        "127.0.0.1:0",
        "-k",
        worker_class,
        "-w",
        str(workers),
        "--graceful-timeout",
        "10",
        "--timeout",
        "60",
        *extra_args,
    ]
    if worker_class == "gthread":
        argv += ["--threads", str(threads)]
    with _launch([*argv, app], _GUNICORN_LISTEN, cwd, env, worker_class) as server:
        yield server


@contextlib.contextmanager
def dev_server(script: str, *, cwd: Path = APPS_DIR, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """Run ``python script`` (cwd ``cwd``) that serves its app with ``app.run()``.

    The script calls ``app.run()``; ``MEST_PORT=0`` makes it bind an ephemeral port.
    """
    with _launch([sys.executable, script], _DEV_LISTEN, cwd, {"MEST_PORT": "0", **(env or {})}, "dev") as server:
        yield server
