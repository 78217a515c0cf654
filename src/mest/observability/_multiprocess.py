"""Prometheus multiprocess mode with zero configuration, correct across gunicorn's worker processes.

Under ``gunicorn app:app`` the master never imports the app and no config file hooks ``child_exit``, so the
usual recipe (set ``PROMETHEUS_MULTIPROC_DIR`` before start, call ``mark_process_dead`` from the master)
is not available. Instead, each worker, on its first request:

* picks the directory shared by the workers of *its* master: ``<tmp>/mest-metrics-<uid>/<master pid>-<master
  start time>`` (``os.getppid()`` is the master in every worker, with or without ``--preload``; the start time
  tells a reused pid from the same master), removes the directories of masters that no longer run, sets
  ``PROMETHEUS_MULTIPROC_DIR`` for itself and makes prometheus_client's value class the multiprocess one;
* writes its values into its own ``<type>_<pid>.db`` files there (prometheus_client's mmap files).

At each scrape, under an exclusive ``flock`` (so two workers never reap or read half-merged files):

* files of workers that are gone (not alive, or no longer a child of the master) are *reaped*: their
  counters, histograms and summaries are added into ``<type>_archive.db`` (so totals survive a worker being
  replaced, and the number of files stays bounded however often workers are recycled), and their ``live*``
  gauges are deleted (in-flight requests, queue depth and readiness are only about live processes);
* the files are merged by prometheus_client's ``MultiProcessCollector``.

A ``PROMETHEUS_MULTIPROC_DIR`` set by the user is used as it is (never removed); the dead-worker reaping still
applies to it. Outside gunicorn, and without that variable, metrics live in the process (no files).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import logging
import operator
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .._process import current_pid

__all__ = ["ENV", "MASTER_ENV", "MultiprocessDir", "choose", "enable", "locked", "reap_dead"]

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_ENV = "prometheus_multiproc_dir"
_SUMMED_TYPES = ("counter", "histogram", "summary")
_ARCHIVE = "archive"

logger = logging.getLogger("mest.metrics")


@dataclass(frozen=True)
class MultiprocessDir:
    """Where this process's metric files live.

    Attributes:
        path: The directory.
        master_pid: The gunicorn master whose workers share it (``None`` for a directory the user chose).
    """

    path: str
    master_pid: int | None


#: Set by ``mest serve --server granian`` in its master: the pid whose child processes share one directory.
MASTER_ENV = "MEST_SERVE_MASTER_PID"


def _under_gunicorn() -> bool:
    # Both: the arbiter module is loaded (we were forked by it), and it has set SERVER_SOFTWARE, which a test
    # process that merely imported gunicorn has not.
    return "gunicorn.arbiter" in sys.modules and os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")


def _server_master() -> int | None:
    """The pre-forking master whose workers share metrics with this process, if this process is a worker."""
    if _under_gunicorn():
        return os.getppid()
    declared = os.environ.get(MASTER_ENV, "")
    if declared.isdigit() and int(declared) == os.getppid():  # a granian worker of `mest serve`
        return int(declared)
    return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/<pid>/stat`` (state, ppid, ...), or ``None`` where there is no procfs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_alive(pid: int, master_pid: int | None) -> bool:
    """Whether ``pid`` still runs and, when we know the master, is still one of its children."""
    if pid == os.getpid():
        return True
    if not _alive(pid):
        return False
    if master_pid is None:
        return True
    fields = _proc_stat(pid)
    if fields is None:  # no procfs: trust the signal check
        return True
    return len(fields) > 1 and fields[1] == str(master_pid) and fields[0] != "Z"


def _master_alive(name: str) -> bool:
    pid_text, _, start = name.partition("-")
    if not pid_text.isdigit():
        return True  # not ours: leave it alone
    pid = int(pid_text)
    if not _alive(pid):
        return False
    return not start or _start_time(pid) in (None, start)


def _private_dir(path: str) -> bool:
    """Create ``path`` (mode 0700) if needed; refuse one that is a symlink or belongs to someone else."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def choose() -> MultiprocessDir | None:
    """The directory this serving process shares with its siblings, or ``None`` for single-process mode.

    Call in the process that serves (after any fork). Never raises: on any problem it logs a warning and
    returns ``None`` (metrics then cover this process only).
    """
    user_dir = os.environ.get(ENV) or os.environ.get(_LEGACY_ENV)
    if user_dir:
        return MultiprocessDir(user_dir, None)
    master = _server_master()
    if master is None or master <= 1:  # orphaned worker: the master is gone, nothing to share with
        return None
    try:
        root = os.path.join(tempfile.gettempdir(), f"mest-metrics-{os.getuid()}")
        if not _private_dir(root):
            logger.warning("%s is not a private directory of this user: metrics cover this worker only", root)
            return None
        start = _start_time(master)
        name = f"{master}-{start}" if start else str(master)
        path = os.path.join(root, name)
        if not _private_dir(path):
            logger.warning("%s is not a private directory of this user: metrics cover this worker only", path)
            return None
        _remove_stale(root, keep=name)
    except OSError as exc:
        logger.warning("cannot prepare the metrics directory (%s): metrics cover this worker only", exc)
        return None
    return MultiprocessDir(path, master)


def _remove_stale(root: str, keep: str) -> None:
    """Remove the directories of gunicorn masters that no longer run (their workers are gone too)."""
    for name in os.listdir(root):
        if name != keep and not _master_alive(name):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def enable(directory: MultiprocessDir) -> None:
    """Make prometheus_client write this process's values into ``directory`` from now on."""
    # Imported before the variable is set: an import with it set would choose the default value class itself.
    from prometheus_client import values

    os.environ[ENV] = directory.path

    # One MultiProcessValue class per process: two would map the same file twice and corrupt it. Every value
    # update asks for the pid (to notice a fork); the cached one spares a system call per update.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue(process_identifier=current_pid)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def locked(directory: MultiprocessDir) -> Iterator[None]:
    """Hold the directory's exclusive lock (between processes and between threads)."""
    fd = os.open(os.path.join(directory.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _pid_of(filename: str) -> tuple[str, str, int] | None:
    """``(type, prefix, pid)`` of a ``<prefix>_<pid>.db`` file; ``None`` for archives and foreign files."""
    stem = os.path.basename(filename)[:-3]
    prefix, _, pid = stem.rpartition("_")
    if not prefix or not pid.isdigit():
        return None
    return prefix.split("_", 1)[0], prefix, int(pid)


def reap_dead(directory: MultiprocessDir) -> None:
    """Fold the files of processes that are gone into the archives; call while holding :func:`locked`."""
    status: dict[int, bool] = {}
    for filename in glob.glob(os.path.join(directory.path, "*.db")):
        parsed = _pid_of(filename)
        if parsed is None:
            continue
        typ, prefix, pid = parsed
        alive = status.get(pid)
        if alive is None:
            alive = status[pid] = _worker_alive(pid, directory.master_pid)
        if alive:
            continue
        try:
            if typ in _SUMMED_TYPES:
                _archive(filename, os.path.join(directory.path, f"{typ}_{_ARCHIVE}.db"))
            elif prefix == "gauge_max":  # a maximum (the last inference's time) outlives the worker that set it
                _archive(filename, os.path.join(directory.path, f"gauge_max_{_ARCHIVE}.db"), combine=max)
            elif prefix.startswith("gauge_live"):
                os.remove(filename)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # someone else (mark_process_dead) got there first: fine
                logger.warning("cannot fold the metrics of a finished worker (%s): %s", filename, exc)


def _archive(filename: str, archive_path: str, combine: Callable[[float, float], float] = operator.add) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    # Renamed first, so the file leaves the collector's view before its values enter the archive: a crash in
    # between loses that worker's counts (a counter reset, which Prometheus handles) instead of counting them
    # twice (a spike).
    merging = filename[:-3] + ".merging"
    os.rename(filename, merging)
    entries = MmapedDict.read_all_values_from_file(merging)  # type: ignore[no-untyped-call]
    archive = MmapedDict(archive_path)  # type: ignore[no-untyped-call]
    try:
        for key, value, _timestamp, _pos in entries:
            current, _ = archive.read_value(key)  # type: ignore[no-untyped-call]
            archive.write_value(key, combine(current, value), 0.0)  # type: ignore[no-untyped-call]
    finally:
        archive.close()  # type: ignore[no-untyped-call]
    os.remove(merging)
