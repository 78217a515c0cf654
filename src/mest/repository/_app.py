"""A folder of model files → registrations on a Mest app (and, with explicit model control, the extension)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from .. import runtimes
from ..app import Mest
from ..tensors import TensorSpec
from ._control import Controller, Served
from ._layout import ModelEntry, scan
from ._settings import SETTINGS_FILE, RepositoryError
from ._state import SharedState

__all__ = ["MODEL_CONTROL_ENV", "REPOSITORY_ENV", "add_repository", "app_from_repository"]

REPOSITORY_ENV = "MEST_MODEL_REPOSITORY"
MODEL_CONTROL_ENV = "MEST_MODEL_CONTROL"
ModelControl = Literal["none", "explicit"]


def _options(entry: ModelEntry, path: Path) -> dict[str, Any]:
    settings_file = entry.directory / SETTINGS_FILE
    options = dict(entry.settings.options)
    known = runtimes.option_names(path)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise RepositoryError(
            f"{settings_file}: field 'options.{unknown[0]}': the runtime for {path.name} has no such option; "
            f"it takes {', '.join(known) or 'none'}."
        )
    if "inputs" in options:
        try:
            options["inputs"] = [TensorSpec(**spec) for spec in options["inputs"]]
        except (TypeError, ValueError) as exc:
            raise RepositoryError(f"{settings_file}: field 'options.inputs': {exc}") from None
    if "allow_pickle" in known:
        options["allow_pickle"] = entry.settings.allow_pickle
    return options


def _predictor(entry: ModelEntry, path: Path) -> runtimes.RuntimePredictor:
    settings = entry.settings
    try:
        model = runtimes.model_for(path, **_options(entry, path))
        return runtimes.RuntimePredictor(
            model, outputs=settings.outputs, warmup=settings.warmup, warmup_inputs=settings.warmup_inputs
        )
    except runtimes.PickleNotAllowed:
        raise RepositoryError(
            f"{path} is a pickle: loading it runs any code its author put in it, so it was not loaded. Save the "
            f"model with skops (model.skops) or as ONNX; if you trust this file, set \"allow_pickle\": true in "
            f"{entry.directory / SETTINGS_FILE}."
        ) from None
    except runtimes.MissingExtra:
        raise
    except RepositoryError:
        raise
    except Exception as exc:
        raise RepositoryError(f"{path}: cannot be served: {type(exc).__name__}: {exc}") from exc


def add_repository(app: Mest, path: str | os.PathLike[str], *, model_control: ModelControl = "none") -> None:
    """Register every model of the repository at ``path`` on ``app``.

    Each served version ``V`` of model ``NAME`` is registered as model ``NAME`` version ``V``: on V2, and on
    its own route, ``/models/NAME`` (or the settings' ``route``) for the highest served version and
    ``/models/NAME/versions/V`` for the others.

    Args:
        app: The app to register on (its settings, API keys included, apply).
        path: The repository: ``path/NAME/VERSION/model.EXT``, with an optional ``path/NAME/mest.json``.
        model_control: ``"explicit"`` adds the V2 repository extension (index, load, unload); ``"none"``
            (default) serves the models as they are.

    Raises:
        RepositoryError: The repository or a model in it is malformed (names the file and field).
        MissingExtra: A model's runtime is not installed (says which extra).
    """
    if model_control not in ("none", "explicit"):
        raise ValueError(f"model_control must be 'none' or 'explicit', got {model_control!r}")
    served: list[Served] = []
    for entry in scan(Path(path)):
        versions = list(entry.files)
        for version, file in entry.files.items():
            base = entry.settings.route or f"/models/{entry.name}"
            route = base if version == versions[-1] else f"/models/{entry.name}/versions/{version}"
            predictor = _predictor(entry, file)
            s = entry.settings
            try:
                app.add_inference_handler(
                    predictor, route, name=entry.name, version=version, max_batch_size=s.max_batch_size,
                    max_batch_delay_ms=s.max_batch_delay_ms, max_queue=s.max_queue, timeout_s=s.timeout_s,
                )
            except ValueError as exc:
                raise RepositoryError(f"{entry.directory}: {exc}") from None
            served.append(Served(entry.name, version, route, predictor))
    if model_control == "explicit":
        controller = Controller(served, SharedState(os.fspath(path)))
        for method, endpoint_path, handler in controller.endpoints():
            app.add_endpoint(method, endpoint_path, handler)
        app.add_request_hook(controller.gate)


def app_from_repository(
    path: str | os.PathLike[str] | None = None,
    *,
    model_control: ModelControl | None = None,
    **settings: Any,
) -> Mest:
    """A Mest app serving every model of a repository folder, with no code.

    Args:
        path: The repository; default ``MEST_MODEL_REPOSITORY``.
        model_control: See :func:`add_repository`; default ``MEST_MODEL_CONTROL``, else ``"none"``.
        **settings: :class:`~mest.Mest` settings (``api_keys=...``, ``title=...``).

    Raises:
        RepositoryError: No path, or a malformed repository (names the file and field).
    """
    if path is None:
        path = os.environ.get(REPOSITORY_ENV) or None
        if path is None:
            raise RepositoryError(f"No model repository: pass a path or set {REPOSITORY_ENV}.")
    if model_control is None:
        control = os.environ.get(MODEL_CONTROL_ENV, "none")
        if control not in ("none", "explicit"):
            raise RepositoryError(f"{MODEL_CONTROL_ENV} must be 'none' or 'explicit', got {control!r}.")
        model_control = control  # type: ignore[assignment]
    app = Mest(**settings)
    add_repository(app, path, model_control=model_control or "none")
    return app
