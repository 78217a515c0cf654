"""Start ``mest serve`` (and, for comparison, plain gunicorn) on an ephemeral loopback port, and always stop it.

Like :mod:`support.servers`: the server binds port 0 and we read the port from gunicorn's "Listening at" line;
every process runs in its own session and is ended by its PID (:func:`support.servers.stop`).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from support.servers import APPS_DIR, RunningServer, stop

LISTEN = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 60.0


def mest_argv(app: str, *args: str) -> list[str]:
    """``mest serve APP`` on 127.0.0.1, port 0, through this interpreter."""
    return [sys.executable, "-m", "mest", "serve", app, "--host", "127.0.0.1", "--port", "0", *args]


def gunicorn_argv(app: str, *args: str) -> list[str]:
    """The seed's command, ``gunicorn -b ... app``, on 127.0.0.1, port 0."""
    return [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", *args, app]


def _pump(server: RunningServer) -> None:
    stdout = server.process.stdout
    assert stdout is not None
    with stdout:
        for line in stdout:
            server.lines.append(line)


def start(argv: Sequence[str], *, cwd: Path = APPS_DIR, env: dict[str, str] | None = None) -> RunningServer:
    """Start ``argv`` and return once it answers ``/health/live``; the caller must :func:`stop` it."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = RunningServer(proc)
    reader = threading.Thread(target=_pump, args=(server,), daemon=True)
    server._reader = reader
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (found := LISTEN.search(server.output)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {' '.join(argv)}\n{server.output}")
            time.sleep(0.05)
        server.url = f"http://127.0.0.1:{found.group(1)}"
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + "/health/live", timeout=2.0).status_code < 500:
                    return server
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server never answered at {server.url}\n{server.output}")
            time.sleep(0.05)
    except BaseException:
        stop(server)
        raise


@contextlib.contextmanager
def running(argv: Sequence[str], *, cwd: Path = APPS_DIR, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """:func:`start` ``argv``, yield the server, stop it by PID whatever happens."""
    server = start(argv, cwd=cwd, env=env)
    try:
        yield server
    finally:
        stop(server)


def children(pid: int) -> set[int]:
    """PIDs of the live child processes of ``pid`` (gunicorn's workers, for its master), from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces) start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, server: RunningServer | None = None
) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` (with the server's output) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            output = f"\nserver output:\n{server.output}" if server is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{output}")
        time.sleep(0.05)


@contextlib.contextmanager
def serve_on(kind: str, module: str, *, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """Serve ``tests/apps/<module>.py``'s ``app`` on one server of ``kind``, one worker, and stop it after.

    Kinds: ``dev`` (``python module.py``, which calls ``app.run()``), ``sync``/``gthread``/``gevent`` (plain
    gunicorn), ``mest-gevent``/``mest-gthread``/``mest-sync`` (``mest serve -k ...``) and ``mest-granian``
    (``mest serve --server granian``; needs the granian extra).
    """
    from support.servers import dev_server, gunicorn

    if kind == "dev":
        launch = dev_server(f"{module}.py", env=env)
    elif kind in ("sync", "gthread", "gevent"):
        launch = gunicorn(f"{module}:app", worker_class=kind, env=env)
    elif kind == "mest-granian":
        launch = running(mest_argv(f"{module}:app", "--server", "granian", "-w", "1"), env=env)
    elif kind.startswith("mest-"):
        launch = running(mest_argv(f"{module}:app", "-w", "1", "-k", kind.removeprefix("mest-")), env=env)
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    with launch as server:
        server.kind = kind
        yield server
