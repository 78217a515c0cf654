"""Whether a server is importing the app right now, so ``app.run()`` at the bottom of the seed's ``app.py``
returns at once instead of starting a second server.

The loader of ``mest serve`` (which sits above the app) marks its import with :func:`importing_for_a_server`;
the app (below it) asks :func:`served_elsewhere`. A context variable, so only the importing thread sees it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["importing_for_a_server", "served_elsewhere"]

_importing: ContextVar[bool] = ContextVar("mest_importing_for_a_server", default=False)


@contextlib.contextmanager
def importing_for_a_server() -> Iterator[None]:
    """Mark the app's module being imported by a server (``mest serve``, ``mest check``, ...)."""
    token = _importing.set(True)
    try:
        yield
    finally:
        _importing.reset(token)


def served_elsewhere() -> bool:
    """Whether the calling code runs inside :func:`importing_for_a_server`."""
    return _importing.get()
