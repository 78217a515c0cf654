"""The target each granian worker of ``mest serve --server granian`` imports: the user's app, models set up.

granian imports ``module:attribute`` in every worker before the worker serves, so importing this module there
is the place to do what gunicorn's ``post_worker_init`` does for ``mest serve``: load the app named by
``MEST_SERVE_APP`` and run every predictor's ``setup`` before the first request arrives.
"""

from __future__ import annotations

import logging
import os
import time

from .granian import APP_ENV
from .loader import load_app

__all__ = ["app"]

logger = logging.getLogger("mest.serve")

app = load_app(os.environ[APP_ENV])
_started = time.perf_counter()
_ready = app.setup()
logger.info(
    "worker %d: models %s in %.0f ms", os.getpid(), "ready" if _ready else "NOT ready (see above)",
    (time.perf_counter() - _started) * 1000,
)
