"""Which repository models are loaded, shared by every worker process of one server.

Why a file and not a worker reload: a load or unload must be seen by *every* gunicorn worker, and by the next
request of any client, however its keep-alive connection is routed. Reloading workers (``SIGHUP``) leaves old
workers serving the old state on their open connections while they drain; a shared file checked on each
request does not. The check is one ``os.stat`` (the file's ``mtime``/size/inode): only when it changed is the
file read again. Each worker then loads or releases its own copy of the model (weights are never shared
across processes), so a load is seen by a worker on its next request to that model.

The file lives in ``<tmp>/mest-repository-<uid>/<master pid>-<master start time>-<repository hash>/`` when
the process is a worker of a pre-forking server (gunicorn, or ``mest serve --server granian``); otherwise
(the development server, tests) the state lives in the process only. Writes are atomic (``os.replace``) under
an exclusive ``flock``, so two workers never lose each other's changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["ModelState", "SharedState"]

logger = logging.getLogger("mest.repository")

#: Set by ``mest serve --server granian`` in its master (see mest.observability's multiprocess metrics).
_MASTER_ENV = "MEST_SERVE_MASTER_PID"


@dataclass(frozen=True)
class ModelState:
    """A model's wanted state: loaded or not, and a generation bumped by every load (so workers reload)."""

    loaded: bool = True
    generation: int = 0


def _master_pid() -> int | None:
    if "gunicorn.arbiter" in sys.modules and os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
        return os.getppid()
    declared = os.environ.get(_MASTER_ENV, "")
    if declared.isdigit() and int(declared) == os.getppid():
        return int(declared)
    return None


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
        return raw[raw.rfind(")") + 2:].split()[19]
    except (OSError, IndexError):
        return ""


def _remove_stale(root: str) -> None:
    """Remove the state of servers whose master no longer runs (so the directory stays small)."""
    for entry in os.listdir(root):
        pid, _, rest = entry.partition("-")
        start = rest.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            alive = not start or _start_time(int(pid)) in ("", start)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def _shared_dir(repository: str) -> str | None:
    master = _master_pid()
    if master is None or master <= 1:
        return None
    root = os.path.join(tempfile.gettempdir(), f"mest-repository-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    info = os.lstat(root)
    if not os.path.isdir(root) or os.path.islink(root) or info.st_uid != os.getuid():
        logger.warning("%s is not a private directory: model control applies to this worker only", root)
        return None
    _remove_stale(root)
    digest = hashlib.sha256(os.path.realpath(repository).encode()).hexdigest()[:12]
    path = os.path.join(root, f"{master}-{_start_time(master)}-{digest}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    return path


class SharedState:
    """The wanted state of every model, read cheaply on each request and written by load/unload.

    Args:
        repository: The repository folder (its path keys the shared file).
        directory: Where the shared file lives; ``None``: chosen as the module docstring says, when this
            process is a pre-forking server's worker (else the state is this process's only).
    """

    def __init__(self, repository: str, directory: str | None = None) -> None:
        self._repository = repository
        self._directory = directory
        self._chosen = directory is not None
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._states: dict[str, ModelState] = {}

    def _file(self) -> str | None:
        if not self._chosen:  # chosen in the serving process, after the fork
            self._directory = _shared_dir(self._repository)
            self._chosen = True
        return None if self._directory is None else os.path.join(self._directory, "state.json")

    def get(self, name: str) -> ModelState:
        """The wanted state of a model (loaded, generation 0 unless changed)."""
        self._refresh()
        return self._states.get(name, ModelState())

    def set(self, name: str, state: ModelState) -> None:
        """Record a model's wanted state for every worker."""
        path = self._file()
        if path is None:
            with self._lock:
                self._states = {**self._states, name: state}
            return
        with self._exclusive(path):
            states = {**self._read(path), name: state}
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".state-")
            with os.fdopen(fd, "w") as f:
                json.dump({n: {"loaded": s.loaded, "generation": s.generation} for n, s in states.items()}, f)
            os.replace(tmp, path)
        self._signature = None
        self._refresh()

    def _refresh(self) -> None:
        path = self._file()
        if path is None:
            return
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return
        signature = (info.st_ino, info.st_mtime_ns, info.st_size)
        if signature != self._signature:
            self._states = self._read(path)
            self._signature = signature

    @staticmethod
    def _read(path: str) -> dict[str, ModelState]:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except FileNotFoundError:
            return {}
        return {name: ModelState(bool(v["loaded"]), int(v["generation"])) for name, v in raw.items()}

    @staticmethod
    @contextlib.contextmanager
    def _exclusive(path: str) -> Iterator[None]:
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
