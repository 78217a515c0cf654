"""Server-fault log lines that no client can turn into a flood.

A bad input that fails only inside ``infer`` (a shape the model rejects) is a 500 with a traceback, and a
client can send thousands a second. The first occurrence of each distinct fault (the endpoint, the exception
type and the line that raised it) is logged in full; repeats within the next minute are only counted, and the
first repeat after that minute logs one summary line with the count. A fault that recurs only rarely is logged
in full each time. Metrics still count every request (docs/observability.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from types import TracebackType

__all__ = ["RepeatFilter", "fault_key"]


def _innermost(tb: TracebackType | None) -> tuple[str, int]:
    if tb is None:
        return "", 0
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def fault_key(endpoint: str | None, error: BaseException) -> tuple[Hashable, ...]:
    """What makes two faults "the same": the endpoint, and the type and raising line of the root cause."""
    cause: BaseException = error
    while cause.__cause__ is not None and cause.__cause__ is not cause:
        cause = cause.__cause__
    return (endpoint, type(cause).__module__, type(cause).__qualname__, _innermost(cause.__traceback__))


class RepeatFilter:
    """Decides, per fault key, whether to log an occurrence in full, as a summary, or not at all.

    Args:
        interval: Seconds during which repeats of a fault are counted, not logged.
        max_keys: Distinct faults remembered (the least recently seen are forgotten first).
        clock: Monotonic seconds (a parameter for tests).
    """

    def __init__(
        self, interval: float = 60.0, max_keys: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [start of the current window, repeats not logged in it]
        self._seen: OrderedDict[Hashable, list[float]] = OrderedDict()

    def check(self, key: Hashable) -> int | None:
        """``None``: don't log this occurrence. ``0``: log it in full. ``n > 0``: log it as a summary of the
        ``n`` repeats not logged since the last line about it (this one included)."""
        now = self._clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None:
                self._seen[key] = [now, 0]
                if len(self._seen) > self._max_keys:
                    self._seen.popitem(last=False)
                return 0
            self._seen.move_to_end(key)
            if now - entry[0] < self.interval:
                entry[1] += 1
                return None
            repeats = int(entry[1])
            entry[0], entry[1] = now, 0
            return repeats + 1 if repeats else 0
