"""Serve a folder of model files with no code: ``DIR/<name>/<version>/model.<ext>`` → registrations.

``mest serve --model-repository DIR`` (or ``MEST_MODEL_REPOSITORY``), or from Python::

    from mest.repository import app_from_repository
    app = app_from_repository("models")

Each model file is served by the built-in runtime its suffix names (:mod:`mest.runtimes`), configured by an
optional ``DIR/<name>/mest.json`` (:class:`ModelSettings`). With ``model_control="explicit"`` the V2 model
repository extension (index, load, unload) is served, and takes effect on every worker. See docs/runtimes.md.
"""

from __future__ import annotations

from ._app import MODEL_CONTROL_ENV, REPOSITORY_ENV, add_repository, app_from_repository
from ._settings import SETTINGS_FILE, ModelSettings, RepositoryError, VersionPolicy

__all__ = [
    "MODEL_CONTROL_ENV",
    "REPOSITORY_ENV",
    "SETTINGS_FILE",
    "ModelSettings",
    "RepositoryError",
    "VersionPolicy",
    "add_repository",
    "app_from_repository",
]
