"""The target each granian worker of ``mest serve --server granian`` imports: the user's app, models set up.

granian imports ``module:attribute`` in every worker before the worker serves, so importing this module there
is the place to do what gunicorn's ``post_worker_init`` does for ``mest serve``: load the app named by
``MEST_SERVE_APP`` and run every predictor's ``setup`` before the first request arrives.

It is also where a stop that arrives while the worker starts is honoured. granian's master installs its
``SIGTERM``/``SIGINT`` handler and then forks the workers, which inherit it: until a worker's own server
installs its handler (after this import, model ``setup`` included), a ``SIGTERM`` from the stopping master
only sets a flag on the worker's copy of the master, and the worker goes on to listen and serve until the
master kills it at ``--graceful-timeout`` (the cause of ``test_lifecycle``'s "new connections not refused":
a worker still starting when ``SIGTERM`` came kept the port open). So this module first exits if such a stop
was already swallowed, and makes any later one, until granian takes over, end the worker before it serves.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

from .granian import APP_ENV
from .loader import load_app

__all__ = ["app"]

logger = logging.getLogger("mest.serve")



def _stop_before_serving(signum: int, frame: Any) -> None:
    """A stop while the worker starts: nothing is served yet, so exiting loses no request."""
    raise SystemExit(0)


def _honour_early_stops() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        inherited = signal.getsignal(signum)
        if getattr(getattr(inherited, "__self__", None), "interrupt_signal", False):
            sys.exit(0)  # the master's inherited handler already swallowed a stop meant for this worker
        signal.signal(signum, _stop_before_serving)


_honour_early_stops()
app = load_app(os.environ[APP_ENV])
_started = time.perf_counter()
_ready = app.setup()
logger.info(
    "worker %d: models %s in %.0f ms", os.getpid(), "ready" if _ready else "NOT ready (see above)",
    (time.perf_counter() - _started) * 1000,
)
