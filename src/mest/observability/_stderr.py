"""Mest's zero-configuration log handler: lines to ``sys.stderr``, written in batches.

A handler that writes and flushes every line makes one ``write`` system call per request. On a gunicorn worker
under load that was the largest single cost of the access log (py-spy, docs/benchmarks.md), larger than
formatting the line. Like nginx's ``access_log ... buffer= flush=``, this handler keeps lines in order in
memory and writes them together:

* when :data:`FLUSH_BYTES` are waiting;
* at once, with everything before it, for a record above ``INFO`` (warnings and errors are never late);
* at most :data:`FLUSH_INTERVAL_S` after a line was logged, by a small flusher thread (a greenlet under
  gevent) started in each process on its first buffered line;
* on ``flush()``, which :func:`logging.shutdown` calls at interpreter exit (gunicorn workers exit through it).

Only this handler buffers; a user's own logging configuration is used as it is.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Optional

from .._process import PROCESS

__all__ = ["FLUSH_BYTES", "FLUSH_INTERVAL_S", "StderrHandler"]

#: Bytes of waiting lines that trigger a write.
FLUSH_BYTES = 16 * 1024
#: The longest a line waits before it is written.
FLUSH_INTERVAL_S = 0.1

_ACCESS_LINE_BYTES = 128  # what a queued, not yet formatted access line counts towards FLUSH_BYTES
_Fields = Optional[dict[str, Any]]  # noqa: UP045 - a runtime alias, evaluated on Python 3.10 too
_Deferred = tuple[Callable[[float, str, _Fields], str], float, str, tuple[object, ...], _Fields]
_handlers: weakref.WeakSet[StderrHandler] = weakref.WeakSet()


def _render(entry: _Deferred) -> str:
    format_line, created, msg, args, fields = entry
    try:
        return format_line(created, msg % args, fields)
    except Exception:  # never lose the batch to one bad line
        return f"<access line could not be formatted: {msg!r} {args!r}>"


class StderrHandler(logging.Handler):
    """Writes records to whatever ``sys.stderr`` is when the batch is written (test capture, redirections)."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str | _Deferred] = []
        self._pending_bytes = 0
        self._flusher_pid: int | None = None
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        # Called by Handler.handle with self.lock held.
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._queue(line, record.levelno)

    def add_access(
        self,
        format_line: Callable[[float, str, dict[str, Any] | None], str],
        created: float,
        msg: str,
        args: tuple[object, ...],
        fields: dict[str, Any] | None,
    ) -> None:
        """Queue an access line, to be formatted (``format_line(created, msg % args, fields)``) when written.

        Used for Mest's access log when nothing else is configured: the request pays for a tuple, and the
        lines of a batch are formatted together when it is written, off the request's path (on the flusher,
        or on the request that fills the buffer). Every argument is immutable by then (strings and numbers).
        """
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._queue((format_line, created, msg, args, fields), logging.INFO, _ACCESS_LINE_BYTES)

    def _queue(self, entry: str | _Deferred, levelno: int, size: int | None = None) -> None:
        """Add a line (or an access line's parts, counted as ``size`` bytes); write now if it is time."""
        self._pending.append(entry)
        self._pending_bytes += len(entry) if size is None else size
        if levelno > logging.INFO or self._pending_bytes >= FLUSH_BYTES:
            self._write_pending()
        elif self._flusher_pid != PROCESS.pid:
            self._start_flusher()

    def flush(self) -> None:
        """Write every waiting line now."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = "\n".join([entry if isinstance(entry, str) else _render(entry) for entry in self._pending]) + "\n"
        self._pending.clear()
        self._pending_bytes = 0
        stream = sys.stderr
        if stream is None:  # pythonw, a closed interpreter: nowhere to write
            return
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not fail the request that logged
            pass

    def _start_flusher(self) -> None:
        self._flusher_pid = pid = PROCESS.pid
        threading.Thread(target=self._flush_periodically, args=(pid,), name="mest-log-flusher", daemon=True).start()

    def _flush_periodically(self, pid: int) -> None:
        while self._flusher_pid == pid:
            time.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def _forget_parent_lines(self) -> None:
        # A forked child got a copy of the parent's waiting lines; the parent writes them, the child must not.
        self._pending = []
        self._pending_bytes = 0


def _after_fork_in_child() -> None:
    for handler in list(_handlers):
        handler._forget_parent_lines()


os.register_at_fork(after_in_child=_after_fork_in_child)
