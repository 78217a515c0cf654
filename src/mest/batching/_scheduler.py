"""Letting other requests run for a moment, on OS threads and on gevent greenlets alike.

The batcher needs one primitive beyond locks and events: "let every request that is ready to run get as far
as the queue, then come back to me". On OS threads that is dropping the GIL (``os.sched_yield()``); other
threads already make progress while the model runs. Under gevent (gunicorn's gevent worker monkey-patches
``threading``) it must be a trip through the event loop *including an I/O poll*: a greenlet that ran the model
blocked the loop, so the next requests are still unread in socket buffers. ``gevent.sleep(0)`` does not poll
I/O; ``gevent.idle()`` returns once the loop has nothing else pending, i.e. after every readable connection
has been read and its greenlet has run up to its own wait.

The choice is made per process (after gunicorn forks and patches), never at import time, and gevent is
imported only when it is already loaded and has patched ``threading``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["cooperative_yield", "gevent_patched"]


def gevent_patched() -> bool:
    """Whether gevent has monkey-patched ``threading`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _os_thread_yield() -> None:
    # os.sched_yield drops the GIL around the syscall, so a thread that is ready takes it; unlike
    # time.sleep(0) it does not sleep for the kernel's timer slack (about 50-80 µs measured here), which would
    # be paid by every request that finds the model idle, including on gunicorn's sync worker.
    os.sched_yield()


def cooperative_yield() -> Callable[[], None]:
    """The function that lets other ready requests run once, for the current process's concurrency model."""
    if gevent_patched():
        import gevent

        idle: Callable[[], None] = gevent.idle
        return idle
    return _os_thread_yield
