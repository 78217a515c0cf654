"""Settings from ``MEST_*`` environment variables, one documented precedence order for all of them.

Precedence, highest first:

1. an explicit argument: ``Mest(max_body_size=...)`` in code, or a ``mest serve --flag`` on the command line;
2. the ``MEST_<NAME>`` environment variable (``MEST_MAX_BODY_SIZE`` for ``max_body_size``);
3. the default.

Environment support is generic over the fields of a settings dataclass, so a field added to
:class:`mest.app.Settings` is configurable as ``MEST_<FIELD>`` with no further code: the value is parsed by
the field's type annotation (:func:`parse`). An unparsable or invalid value raises :class:`ConfigError`,
whose message names the variable, when the app is created (that is, at start-up). This module imports
nothing of mest.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, Union

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "RequestLimits",
    "apply_environment",
    "env_name",
    "known_variables",
    "parse",
    "track_explicit_arguments",
]

ENV_PREFIX = "MEST_"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the setting and where the value came from."""


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Limits on a request's head, enforced by the server before the app runs (gunicorn's defaults).

    ``mest serve`` hands them to gunicorn; the development server checks them itself. ``0`` means no limit
    for ``limit_request_line`` and ``limit_request_field_size``.

    Attributes:
        limit_request_line: Longest request line (method, URL, version) in bytes; 414 beyond it.
        limit_request_fields: Most header fields; 431 beyond it.
        limit_request_field_size: Longest header field (name and value) in bytes; 431 beyond it.
    """

    limit_request_line: int = 4094
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{field.name} must be a non-negative integer, got {value!r}")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``max_body_size`` → ``MEST_MAX_BODY_SIZE``."""
    return ENV_PREFIX + field.upper()


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse(raw: str, hint: Any, name: str) -> Any:
    """Parse the text of an environment variable as a value of type ``hint``.

    Supported: ``bool`` (``1/true/yes/on``, ``0/false/no/off``), ``int``, ``float``, ``str``, ``Literal[...]``,
    ``tuple[str, ...]`` / ``list[str]`` / ``frozenset[str]`` (comma-separated), and ``X | None`` (an empty
    value, ``none`` or ``null`` gives ``None``).

    Args:
        raw: The variable's text.
        hint: The field's type (resolved, not a string).
        name: The variable's name, for the error message.

    Raises:
        ConfigError: The text is not a value of that type, or the type is not supported.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if type(None) in args and raw.strip().lower() in _NONE:
            return None
        if len(others) == 1:
            return parse(raw, others[0], name)
        raise ConfigError(f"{name}: settings of type {hint} cannot be read from the environment")
    if origin is Literal:
        for choice in args:
            if str(choice) == raw.strip():
                return choice
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(map(str, args))}")
    if origin in (tuple, list, frozenset) and args and args[0] is str:
        items = _split_list(raw)
        return frozenset(items) if origin is frozenset else origin(items)
    if hint in _SCALARS:
        return _SCALARS[hint](raw, name)
    raise ConfigError(f"{name}: settings of type {hint} cannot be read from the environment")


def _parse_bool(raw: str, name: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise ConfigError(f"{name}={raw!r}: expected true or false (1/0, yes/no, on/off)")


def _parse_int(raw: str, name: str) -> int:
    try:
        return int(raw.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None


def _parse_float(raw: str, name: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None


_SCALARS: dict[Any, Callable[[str, str], Any]] = {
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
    str: lambda raw, name: raw,
}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def apply_environment(
    settings: S, *, explicit: Collection[str] = (), environ: Mapping[str, str] | None = None
) -> S:
    """Return ``settings`` with every field not given explicitly replaced by its ``MEST_*`` variable, if set.

    Each variable is validated on its own (the dataclass's ``__post_init__`` runs for each), so an invalid
    value is reported with the variable that carried it.

    Args:
        settings: A dataclass instance built from explicit arguments and defaults.
        explicit: Names of the fields the caller set explicitly; their variables are ignored.
        environ: Defaults to ``os.environ``.

    Raises:
        ConfigError: A variable cannot be parsed or its value is invalid.
    """
    environ = os.environ if environ is None else environ
    for field, hint in _field_types(type(settings)).items():
        name = env_name(field)
        if field in explicit or name not in environ:
            continue
        value = parse(environ[name], hint, name)
        try:
            settings = dataclasses.replace(settings, **{field: value})  # type: ignore[type-var]
        except (TypeError, ValueError) as exc:
            shown = "<hidden>" if _is_secret(settings, field) else repr(environ[name])
            raise ConfigError(f"{name}={shown}: {exc}") from None
    return settings


def _is_secret(settings: Any, field: str) -> bool:
    for f in dataclasses.fields(settings):
        if f.name == field:
            return not f.repr
    return False


def known_variables(*classes: type) -> set[str]:
    """The ``MEST_*`` names of every field of the given dataclasses."""
    return {env_name(field) for cls in classes for field in _field_types(cls)}


def track_explicit_arguments(init: Callable[Concatenate[T, P], None]) -> Callable[Concatenate[T, P], None]:
    """Decorate ``__init__`` to record which keyword arguments the caller passed, as ``_explicit_arguments``.

    Why: an argument equal to its default cannot otherwise be told from an omitted one, and only omitted
    settings may be taken from the environment. Works whatever new keyword arguments ``__init__`` grows.
    """

    @functools.wraps(init)
    def wrapper(self: T, /, *args: P.args, **kwargs: P.kwargs) -> None:
        setattr(self, "_explicit_arguments", frozenset(kwargs))  # noqa: B010
        init(self, *args, **kwargs)

    return wrapper
