"""The optional per-model settings file, ``DIR/<name>/mest.json``, validated with errors naming file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["SETTINGS_FILE", "ModelSettings", "RepositoryError", "VersionPolicy", "read_settings"]

SETTINGS_FILE = "mest.json"


class RepositoryError(ValueError):
    """The model repository is not servable; the message names the file (and field) at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class VersionPolicy(_Strict):
    """Which version folders are served: the ``latest`` N (default 1), ``all``, or ``specific`` ones.

    Versions are ordered as integers when every folder name is one, else as strings.
    """

    latest: int | None = Field(default=None, ge=1)
    all: Literal[True] | None = None
    specific: list[str] | None = Field(default=None, min_length=1)

    def choose(self, versions: list[str]) -> list[str]:
        """The versions to serve among those found (sorted ascending)."""
        if self.all:
            return versions
        if self.specific is not None:
            return [v for v in versions if v in self.specific]
        return versions[-(self.latest or 1):]

    def model_post_init(self, context: Any) -> None:
        if sum(x is not None for x in (self.latest, self.all, self.specific)) > 1:
            raise ValueError("give one of latest, all or specific")


class ModelSettings(_Strict):
    """What ``mest.json`` may set for one model (every field optional). See docs/runtimes.md."""

    version_policy: VersionPolicy = VersionPolicy()
    route: str | None = None
    max_batch_size: int = Field(default=1, ge=1)
    max_batch_delay_ms: float = Field(default=5.0, ge=0)
    max_queue: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    outputs: list[str] | None = None
    warmup: int = Field(default=1, ge=0)
    warmup_inputs: list[dict[str, Any]] | None = None
    allow_pickle: bool = False
    options: dict[str, Any] = {}

    @field_validator("max_batch_delay_ms", "timeout_s", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _location(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(the whole file)"


def read_settings(model_dir: Path) -> ModelSettings:
    """The settings of the model in ``model_dir``; the defaults when it has no ``mest.json``.

    Raises:
        RepositoryError: The file is not JSON or a field is invalid (the message names the file and field).
    """
    path = model_dir / SETTINGS_FILE
    if not path.is_file():
        return ModelSettings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RepositoryError(f"{path}: not a readable JSON file: {exc}") from None
    if not isinstance(raw, dict):
        raise RepositoryError(f"{path}: must be a JSON object of settings.")
    try:
        return ModelSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"field {_location(e)!r}: {e['msg']}" for e in exc.errors())
        raise RepositoryError(f"{path}: {problems}") from None
