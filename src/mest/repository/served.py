"""The app ``mest serve --model-repository DIR`` runs in each worker: ``mest.repository.served:app``.

Built on first access from ``MEST_MODEL_REPOSITORY`` and ``MEST_MODEL_CONTROL`` (which ``mest serve`` sets
for its workers), so importing this module alone builds nothing.
"""

from __future__ import annotations

from typing import Any

from ..app import Mest
from ._app import app_from_repository

__all__ = ["SPEC"]  # and `app`, built on first access

#: The app spec ``mest serve``, ``mest routes`` and ``mest check`` load for a model repository.
SPEC = "mest.repository.served:app"

_app: Mest | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = app_from_repository()
    return _app
