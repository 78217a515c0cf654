"""A model repository on disk: ``DIR/<name>/<version>/model.<ext>`` (plus an optional ``DIR/<name>/mest.json``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import runtimes
from ._settings import SETTINGS_FILE, ModelSettings, RepositoryError, read_settings

__all__ = ["ModelEntry", "scan"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ModelEntry:
    """One model folder: its name, settings, and the model file of each version it serves."""

    name: str
    directory: Path
    settings: ModelSettings
    files: dict[str, Path]  # version -> model file, for the versions the policy serves, ascending


def _version_key(versions: list[str]) -> list[str]:
    if all(v.isdecimal() for v in versions):
        return sorted(versions, key=int)
    return sorted(versions)


def _model_file(version_dir: Path) -> Path:
    found = sorted(p for p in version_dir.iterdir() if p.is_file() and p.stem == "model")
    if not found:
        raise RepositoryError(
            f"{version_dir}: no model file; put the model in it as model.<ext>, one of "
            f"{', '.join('model' + s for s in runtimes.SUFFIXES)}."
        )
    if len(found) > 1:
        raise RepositoryError(f"{version_dir}: several model files ({', '.join(p.name for p in found)}); keep one.")
    if found[0].suffix.lower() not in runtimes.SUFFIXES:
        raise RepositoryError(
            f"{found[0]}: no built-in runtime serves {found[0].suffix!r} files; known: {', '.join(runtimes.SUFFIXES)}."
        )
    return found[0]


def _entry(model_dir: Path) -> ModelEntry:
    name = model_dir.name
    if not _NAME_RE.fullmatch(name):
        raise RepositoryError(f"{model_dir}: model folder names are model names: letters, digits, '.', '_', '-'.")
    settings = read_settings(model_dir)
    versions = [p.name for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    bad = [v for v in versions if not _NAME_RE.fullmatch(v)]
    if bad:
        raise RepositoryError(f"{model_dir / bad[0]}: version folder names must be letters, digits, '.', '_', '-'.")
    chosen = settings.version_policy.choose(_version_key(versions))
    if not chosen:
        where = SETTINGS_FILE + " field 'version_policy'" if versions else "version folders"
        raise RepositoryError(f"{model_dir}: no version to serve (check its {where}); expected {name}/1/model.onnx.")
    return ModelEntry(name, model_dir, settings, {v: _model_file(model_dir / v) for v in chosen})


def scan(root: Path) -> list[ModelEntry]:
    """Every model of a repository, sorted by name.

    Raises:
        RepositoryError: The folder is missing or a model in it is malformed (named).
    """
    if not root.is_dir():
        raise RepositoryError(f"Model repository {str(root)!r} is not a directory.")
    entries = [_entry(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if not entries:
        raise RepositoryError(f"Model repository {str(root)!r} has no model folder; expected {root}/NAME/1/model.onnx.")
    return entries
