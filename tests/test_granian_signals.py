"""granian under ``mest serve``: a ``SIGTERM`` that arrives while workers are still starting stops them.

granian's master forks its workers after installing its own ``SIGTERM`` handler, so a worker inherits it and,
until its server installs its own, swallows a stop (see :mod:`mest.server._granian_worker`); such a worker
then listened and served until the master killed it at ``--graceful-timeout``. This was the cause of
``tests/test_lifecycle.py``'s intermittent "new connections not refused" on busy machines, where a worker was
still importing the app when the test sent ``SIGTERM``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.mest_serve import wait_for
from support.servers import APPS_DIR

pytest.importorskip("granian")
pytestmark = pytest.mark.server

GRACEFUL_S = 120  # the master would kill a worker that ignores the stop only after this long


def test_sigterm_while_workers_run_setup_stops_them_at_once(tmp_path: Path) -> None:
    (tmp_path / "gate-closed").touch()  # setup never finishes by itself within the test
    proc = subprocess.Popen(
        [sys.executable, "-m", "mest", "serve", "slow_setup_app:app", "--server", "granian", "-w", "2",
         "--host", "127.0.0.1", "--port", "0", "--graceful-timeout", str(GRACEFUL_S)],
        cwd=APPS_DIR, env={**os.environ, "SETUP_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        wait_for(lambda: len(list(tmp_path.glob("setup-started.*"))) == 2, 60, "both workers to be in setup")
        proc.send_signal(signal.SIGTERM)
        # Far less than GRACEFUL_S: the workers stop themselves instead of being killed by the master.
        output, _ = proc.communicate(timeout=GRACEFUL_S / 3)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, output
    assert "refused to gracefully stop" not in output
    assert "Started worker" not in output  # no worker went on to serve after the stop
