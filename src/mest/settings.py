"""``Settings``: every setting of a Mest app, each declared once, and how ``Mest(...)`` arguments become them.

A setting is one field of :class:`Settings`, made with :func:`mest.config.setting`: the field's name, type
and default are the setting's; its spec holds its bounds, its further check and, for the few that
``mest serve`` also has, the flag. From that one declaration come the ``MEST_<NAME>`` environment variable,
its parser and validation (:mod:`mest.config`), the ``mest serve`` flag (:mod:`mest.cli`) and the check of
docs/cli.md's tables (``tests/test_config.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from .config import apply_environment, setting, validate
from .security import check_api_keys, check_cors_origins, check_public_paths

__all__ = ["ROUTE_RE", "Settings", "SettingsArguments"]

#: A route or endpoint path: absolute, of URL-safe segments (RFC 3986 ``pchar``), optionally ending in ``/``.
ROUTE_RE = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+/?$|^/$")


def _path(name: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not ROUTE_RE.fullmatch(value)):
        raise ValueError(f"{name} must be a path like '/health/live', got {value!r}")
    return value


def _title(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _positive_or_none(name: str, value: Any) -> Any:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
    ):
        raise ValueError(f"{name} must be > 0 or None, got {value!r}")
    return value


# Lists are accepted (``Mest(api_keys=[...])``) and stored as tuples, so settings stay immutable.
def _api_keys(name: str, value: Any) -> Any:
    return check_api_keys(value)


def _public_paths(name: str, value: Any) -> Any:
    return check_public_paths(value)


def _cors_origins(name: str, value: Any) -> Any:
    return check_cors_origins(value)


@dataclass(frozen=True)
class Settings:
    """Every setting of a Mest app, passed down as one object.

    Attributes:
        max_body_size: Largest accepted request body in bytes (413 beyond it, refused before it is read).
        body_timeout: Longest wait, in seconds, between two reads of a request body (408 and the connection
            closed beyond it, so a stalled client frees its worker); ``0`` switches it off. Applied on the
            development server and gunicorn (docs/production.md).
        health_live_path: Liveness endpoint; ``None`` switches it off.
        health_ready_path: Readiness endpoint; ``None`` switches it off.
        api_keys: Keys accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; empty (the
            default) switches authentication off. Hidden from ``repr`` and logs (docs/security.md).
        public_paths: Path patterns (``fnmatch``: ``*`` matches anything, ``/`` included) served without a
            key when ``api_keys`` is set; ``None`` (the default): the health endpoints.
        cors_origins: Browser origins allowed by CORS (``"*"`` for any); empty (the default) switches CORS off.
        metrics_path: Prometheus metrics endpoint; ``None`` switches it and the collection of metrics off.
        openapi_path: OpenAPI 3.1 document of every route; ``None`` switches it (and the docs page) off.
        docs_path: Interactive API docs (Swagger UI, bundled); ``None`` switches it off.
        title: The API's title in the OpenAPI document and on the docs page.
        log_format: ``"text"`` (for people) or ``"json"`` (one JSON object per line) for the log handler
            Mest installs when logging is not configured (docs/observability.md).
        access_log: One ``mest.access`` log line per request.
        log_bodies: Add the request body (truncated to 1 KiB) to access lines. Off by default: bodies may
            carry personal data.
        stream_time_limit_s: Longest a streamed response may last, in seconds; a stream still running then
            ends with an error event (docs/streaming.md). ``None`` (the default): no limit.

    Each setting can also come from its ``MEST_<NAME>`` environment variable (docs/cli.md): an explicit
    ``Mest(...)`` argument wins over the variable, which wins over the default (:meth:`from_arguments`).
    """

    max_body_size: int = setting(
        10 * 1024 * 1024, minimum=0, flag="--max-body-size", help="Largest request body in bytes (413 beyond)."
    )
    body_timeout: float = setting(
        30.0, minimum=0, unit="seconds", flag="--body-timeout",
        help="Longest wait in seconds between two reads of a request body: 408 and the connection closed "
        "beyond it (0: off). With granian: its header read timeout instead (docs/cli.md).",
    )
    health_live_path: str | None = setting("/health/live", check=_path)
    health_ready_path: str | None = setting("/health/ready", check=_path)
    api_keys: tuple[str, ...] = setting((), secret=True, check=_api_keys)
    public_paths: tuple[str, ...] | None = setting(None, check=_public_paths)
    cors_origins: tuple[str, ...] = setting((), check=_cors_origins)
    metrics_path: str | None = setting("/metrics", check=_path)
    openapi_path: str | None = setting("/openapi.json", check=_path)
    docs_path: str | None = setting("/docs", check=_path)
    title: str = setting("Mest", check=_title)
    log_format: Literal["text", "json"] = setting(
        "text", flag="--log-format", help="Log lines as text, or one JSON object per line."
    )
    access_log: bool = setting(True)
    log_bodies: bool = setting(False)
    stream_time_limit_s: float | None = setting(None, check=_positive_or_none)

    def __post_init__(self) -> None:
        validate(self)
        if self.docs_path is not None and self.openapi_path is None:
            raise ValueError("docs_path needs openapi_path: the docs page shows the OpenAPI document")

    @classmethod
    def from_arguments(
        cls, arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """The settings of ``Mest(**arguments)``: each given argument, else its ``MEST_<NAME>`` variable,
        else the default (an argument wins even when it equals the default).

        Raises:
            TypeError: An argument is no setting (as for an unknown keyword argument).
            ValueError: An argument is invalid (:class:`mest.config.ConfigError`, naming the variable, when
                the value came from the environment).
        """
        unknown = sorted(set(arguments) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"Mest() got an unexpected keyword argument {unknown[0]!r}")
        return apply_environment(cls(**arguments), explicit=arguments.keys(), environ=environ)


class SettingsArguments(TypedDict, total=False):
    """The keyword arguments of ``Mest(...)``: one per :class:`Settings` field, typed as accepted (a list
    where the setting stores a tuple). Spelled out because a type checker cannot derive a TypedDict from a
    dataclass; a test checks that it names exactly the fields of :class:`Settings`, which keep the defaults."""

    max_body_size: int
    body_timeout: float
    health_live_path: str | None
    health_ready_path: str | None
    api_keys: Iterable[str]
    public_paths: Iterable[str] | None
    cors_origins: Iterable[str]
    metrics_path: str | None
    openapi_path: str | None
    docs_path: str | None
    title: str
    log_format: Literal["text", "json"]
    access_log: bool
    log_bodies: bool
    stream_time_limit_s: float | None
