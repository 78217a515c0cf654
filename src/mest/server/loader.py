"""Import the user's app from a ``module:attribute`` spec, for ``mest serve``, ``mest routes`` and ``mest check``.

While the module is being imported, ``app.run()`` calls in it return at once, so the seed's ``app.py`` (which
ends with an unguarded ``app.run()``) loads without starting the development server.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._hosting import importing_for_a_server

if TYPE_CHECKING:
    from ..app import Mest

__all__ = ["AppLoadError", "describe_app", "load_app", "split_spec"]

class AppLoadError(Exception):
    """The app spec does not name an importable Mest app; the message says what to fix."""


def split_spec(spec: str) -> tuple[str, str, Path | None]:
    """``"pkg.module:attr"`` → ``("pkg.module", "attr", None)``; ``"dir/app.py"`` → ``("app", "app", dir)``.

    The attribute defaults to ``app``. A spec naming a ``.py`` file imports it by its file name from its
    directory.

    Raises:
        AppLoadError: The spec is malformed.
    """
    target, sep, attr = spec.rpartition(":") if ":" in spec else (spec, "", "app")
    if sep and not attr:
        raise AppLoadError(f"App spec {spec!r} ends with ':': name the app object, like 'app:app'.")
    if not target:
        raise AppLoadError(f"App spec {spec!r} names no module: use MODULE:APP, like 'app:app'.")
    directory: Path | None = None
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target)
        if path.suffix != ".py":
            raise AppLoadError(f"App spec {spec!r}: a file must be a Python file ending in '.py'.")
        if not path.is_file():
            raise AppLoadError(f"App spec {spec!r}: no such file {str(path)!r}.")
        directory = path.resolve().parent
        target = path.stem
    if not all(part.isidentifier() for part in target.split(".")) or not attr.isidentifier():
        raise AppLoadError(f"App spec {spec!r} is not MODULE:APP (like 'app:app' or 'pkg.service:app').")
    return target, attr, directory


def load_app(spec: str) -> Mest:
    """Import ``spec`` (``"module:attr"``) and return the :class:`~mest.Mest` app it names.

    The current directory (or the file's directory, for a ``.py`` path) is put first on ``sys.path``, as
    gunicorn does. Exceptions raised by the module itself propagate unchanged, with their traceback.

    Raises:
        AppLoadError: The module does not exist, has no such attribute, or it is not a Mest app.
    """
    from ..app import Mest

    module_name, attr, directory = split_spec(spec)
    search = str(directory) if directory is not None else os.getcwd()
    if search not in sys.path:
        sys.path.insert(0, search)
    with importing_for_a_server():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise  # a module the app imports is missing: the user needs the traceback
            raise AppLoadError(
                f"Cannot import {module_name!r} (from {spec!r}): no such module in {search}. "
                "Run the command from the directory that contains it, or name it as a path like 'src/app.py'."
            ) from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        found = sorted(name for name, value in vars(module).items() if isinstance(value, Mest))
        hint = f" It defines: {', '.join(found)}." if found else " It defines no Mest app."
        raise AppLoadError(f"Module {module_name!r} has no attribute {attr!r}.{hint}") from None
    if not isinstance(app, Mest):
        raise AppLoadError(
            f"{module_name}:{attr} is a {type(app).__name__}, not a Mest app. "
            "Point the command at the object created with `app = Mest()`."
        )
    return app


def describe_app(app: Mest) -> dict[str, Any]:
    """The app's routes (with the model and batching settings behind each) and its main settings, as JSON.

    What ``mest routes`` prints and ``mest serve`` shows on start-up. Never contains an API key.
    """
    routes = []
    for endpoint in app.endpoints():
        path = endpoint.path
        entry: dict[str, Any] = {"method": endpoint.method, "path": path, "public": app.is_public(path)}
        pipeline = app.pipeline(endpoint.model, endpoint.version) if endpoint.model is not None else None
        if pipeline is not None:
            config = pipeline.config
            entry["model"] = {
                "name": config.name,
                "version": config.version,
                "route": config.route,
                "max_batch_size": config.max_batch_size,
                "max_batch_delay_ms": config.max_batch_delay_ms,
                "max_queue": config.max_queue,
                "timeout_s": config.timeout_s,
            }
        routes.append(entry)
    settings = app.settings
    return {
        "routes": routes,
        "settings": {
            "max_body_size": settings.max_body_size,
            "auth": bool(settings.api_keys),
            "cors": list(settings.cors_origins),
        },
    }
