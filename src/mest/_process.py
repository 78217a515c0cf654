"""This process's id, without a system call each time it is asked for.

Mest keeps per-process state (the predictor's setup, the batcher's queue, metric files, log records) and
checks on every request that it is still in the process that created it, because gunicorn forks workers from
a master that may have imported the app. ``os.getpid()`` is a system call; on the virtual machines these
servers usually run on, a dozen of them per request cost more than the rest of Mest's per-request work (found
with py-spy on a gunicorn worker under load, see docs/benchmarks.md). The id is read once and refreshed in
the child after every ``os.fork()`` (which is how gunicorn, multiprocessing's fork start method and
``os.forkpty`` create processes), so it is always the current process's.
"""

from __future__ import annotations

import os

__all__ = ["PROCESS", "current_pid"]


class _Process:
    """``PROCESS.pid`` is ``os.getpid()``; an attribute read, for the checks made on every request."""

    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid = os.getpid()


PROCESS = _Process()


def _refresh() -> None:
    PROCESS.pid = os.getpid()


os.register_at_fork(after_in_child=_refresh)


def current_pid() -> int:
    """``os.getpid()``, cached: the value is refreshed in the child after a fork."""
    return PROCESS.pid
