"""Settings from ``MEST_*`` environment variables, one documented precedence order for all of them.

Precedence, highest first:

1. an explicit argument: ``Mest(max_body_size=...)`` in code, or a ``mest serve --flag`` on the command line;
2. the ``MEST_<NAME>`` environment variable (``MEST_MAX_BODY_SIZE`` for ``max_body_size``);
3. the default.

Each setting is declared once, as a field of a settings dataclass made with :func:`setting`
(:class:`mest.settings.Settings` for ``Mest(...)``, :class:`RequestLimits`,
:class:`mest.server.options.ServeOptions` for ``mest serve``): its name, default and type are the field's,
and its :class:`Spec` holds its bounds, further checks and ``mest serve`` flag. Everything else is derived:
the variable ``MEST_<FIELD>`` (:func:`env_name`), its parser (the field's type, :func:`parse`), its
validation (:func:`validate`), and the click option (:mod:`mest.cli`). An unparsable or invalid value raises
:class:`ConfigError`, whose message names the variable, when the app is created (that is, at start-up). This
module imports nothing of mest.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar, Union

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "RequestLimits",
    "Spec",
    "apply_environment",
    "env_name",
    "known_variables",
    "parse",
    "same_as",
    "setting",
    "settings_fields",
    "spec_of",
    "validate",
]

ENV_PREFIX = "MEST_"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})

T = TypeVar("T")
S = TypeVar("S")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the setting and where the value came from."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a settings field declares besides its name, type and default (kept in the field's metadata).

    Why here: each setting is declared once, as a field of its dataclass (:class:`mest.settings.Settings`,
    :class:`RequestLimits`, :class:`mest.server.options.ServeOptions`), and everything else is derived from
    that field: its ``MEST_<NAME>`` variable (:func:`env_name`), its parser (:func:`parse`, from the type), its
    validation (:func:`validate`), and its ``mest serve`` flag (built by :mod:`mest.cli` from ``flag``).

    Attributes:
        help: The ``mest serve`` flag's help text.
        flag: The ``mest serve`` flag (``"--worker-class"``), if the setting has one.
        short: The flag's short alias (``"-k"``).
        minimum: Smallest allowed value of a number, checked by :func:`validate` and the flag's click range.
        maximum: Largest allowed value of a number (likewise).
        unit: What a number counts, named in its error message (``"seconds"``).
        check: Further validation, ``check(name, value) -> value`` (the value may be normalized, as a list
            of keys made a tuple); raises ``ValueError``.
        show_default: What ``--help`` shows as the flag's default instead of the value.
        to_app: A ``mest serve`` option that is also an app setting, passed to the app's processes as its
            ``MEST_<NAME>`` variable.
    """

    help: str = ""
    flag: str | None = None
    short: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""
    check: Callable[[str, Any], Any] | None = None
    show_default: str | None = None
    to_app: bool = False


_SPEC = "mest"
_NO_SPEC = Spec()


def setting(default: T, *, secret: bool = False, **spec: Any) -> T:
    """A settings field: ``max_body_size: int = setting(10 * 1024 * 1024, minimum=0, flag="--max-body-size")``.

    Args:
        default: The setting's default.
        secret: Hidden from ``repr`` and from error messages (API keys).
        **spec: The :class:`Spec` of the field.
    """
    return dataclasses.field(default=default, repr=not secret, metadata={_SPEC: Spec(**spec)})


def same_as(cls: type, name: str, *, default: Any = dataclasses.MISSING, **changes: Any) -> Any:
    """A field declared as ``cls``'s field ``name`` (its spec and, unless given, its default): for a setting
    that two dataclasses hold (``mest serve``'s ``--max-body-size`` is the app's ``max_body_size``)."""
    (source,) = [f for f in dataclasses.fields(cls) if f.name == name]
    spec = dataclasses.replace(spec_of(source), **changes)
    default = source.default if default is dataclasses.MISSING else default
    return dataclasses.field(default=default, repr=source.repr, metadata={_SPEC: spec})


def spec_of(field: dataclasses.Field[Any]) -> Spec:
    """The :class:`Spec` of a settings field (an empty one for a plain field)."""
    spec: Spec = field.metadata.get(_SPEC, _NO_SPEC)
    return spec


_FIELDS: dict[type, list[tuple[dataclasses.Field[Any], Any, Spec]]] = {}


def settings_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any, Spec]]:
    """``(field, resolved type, spec)`` of each settings field of ``cls``, in declaration order."""
    found = _FIELDS.get(cls)
    if found is None:  # resolved once per class: validate() runs on every settings object made
        hints = typing.get_type_hints(cls)
        found = _FIELDS[cls] = [(f, hints[f.name], spec_of(f)) for f in dataclasses.fields(cls) if _SPEC in f.metadata]
    return found


def validate(settings: Any) -> None:
    """Check every settings field of a dataclass instance against its type and spec (from ``__post_init__``).

    The type decides the check (a ``bool`` is ``True`` or ``False``, an ``int`` an integer within
    ``minimum``/``maximum``, a ``Literal`` one of its values, ``X | None`` also ``None``), unless the spec has a
    ``check`` of its own, which may also normalize the value (set with ``object.__setattr__``: the instance is
    frozen).

    Raises:
        ValueError: A value is invalid; the message names the setting.
    """
    for field, hint, spec in settings_fields(type(settings)):
        value = getattr(settings, field.name)
        if spec.check is not None:
            object.__setattr__(settings, field.name, spec.check(field.name, value))
            continue
        base = _without_none(hint)
        if value is not None or base is hint:
            _check_type(field.name, value, base, spec)


def _without_none(hint: Any) -> Any:
    """``X`` for ``X | None``; the hint itself otherwise."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        others = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(others) == 1:
            return others[0]
    return hint


def _check_type(name: str, value: Any, hint: Any, spec: Spec) -> None:
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    elif hint is int or hint is float:
        _check_number(name, value, hint, spec)
    elif typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            shown = [repr(c) for c in choices]
            listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
            raise ValueError(f"{name} must be {listed}, got {value!r}")
    elif hint is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")


def _check_number(name: str, value: Any, hint: Any, spec: Spec) -> None:
    low, high = spec.minimum, spec.maximum
    kinds = (int,) if hint is int else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok and not ((low is None or value >= low) and (high is None or value <= high)):
        ok = False
    if ok:
        return
    kind = "integer" if hint is int else "number"
    unit = f" of {spec.unit}" if spec.unit else ""
    if low == 0 and high is None:
        wanted = f"a non-negative {kind}{unit}"
    elif high is None:
        wanted = f"{'an' if hint is int else 'a'} {kind}{unit} >= {low:g}" if low is not None else f"a {kind}{unit}"
    else:
        wanted = f"{'an' if hint is int else 'a'} {kind}{unit} from {low or 0:g} to {high:g}"
    raise ValueError(f"{name} must be {wanted}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Limits on a request's head, enforced by the server before the app runs (gunicorn's defaults).

    ``mest serve`` hands them to gunicorn; the development server checks them itself. ``0`` means no limit
    for ``limit_request_line`` and ``limit_request_field_size``. The bounds are gunicorn's.

    Attributes:
        limit_request_line: Longest request line (method, URL, version) in bytes; 414 beyond it.
        limit_request_fields: Most header fields; 431 beyond it.
        limit_request_field_size: Longest header field (name and value) in bytes; 431 beyond it.
    """

    limit_request_line: int = setting(
        4094, minimum=0, maximum=8190, flag="--limit-request-line",
        help="Longest request line (method + URL) in bytes; 414 beyond.",
    )
    limit_request_fields: int = setting(
        100, minimum=1, maximum=32768, flag="--limit-request-fields", help="Most request headers; 431 beyond."
    )
    limit_request_field_size: int = setting(
        8190, minimum=0, flag="--limit-request-field-size", help="Longest header line in bytes; 431 beyond."
    )

    def __post_init__(self) -> None:
        validate(self)

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
