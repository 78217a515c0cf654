"""Logging: the access log, its two formats, and the zero-configuration handler.

Everything goes through :mod:`logging` under the ``mest`` logger (access lines under ``mest.access``), so
users route, filter and format Mest's records like any others. Each access record carries its fields as
record attributes (``method``, ``route``, ``status``, ``latency_ms``, ``model``, ``batch_size``,
``request_id``, and ``body`` when asked for), which :class:`JsonFormatter` and any third-party structured
formatter can read; the text message is formatted lazily by logging itself, only if a handler emits it.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any, Literal

import orjson

__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_LOGGER",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "access_logger",
    "configure_logging",
    "describe_body",
    "safe_text",
]

LogFormat = Literal["text", "json"]
ACCESS_LOGGER = "mest.access"
#: Attributes an access record carries, in the order :class:`JsonFormatter` writes them.
ACCESS_FIELDS = ("method", "route", "status", "latency_ms", "model", "batch_size", "request_id", "body")
_OTHER_FIELDS = ("request_id",)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_BODY_LIMIT = 1024
_DEFAULT_HANDLER = "_mest_default_handler"
_CONFIGURE_LOCK = threading.Lock()  # two first requests on two threads must not add two handlers

access_logger = logging.getLogger(ACCESS_LOGGER)


def safe_text(text: str, limit: int = 256) -> str:
    """A client-supplied string made safe for one log line: no control characters, bounded length."""
    text = text[:limit]
    return _UNSAFE.sub("?", text) if _UNSAFE.search(text) else text


def describe_body(body: bytes) -> str:
    """A request body for the access log (``log_bodies=True``): UTF-8 text, truncated."""
    shown = body[:_BODY_LIMIT].decode("utf-8", "backslashreplace")
    suffix = f"... ({len(body)} bytes)" if len(body) > _BODY_LIMIT else ""
    return safe_text(shown, _BODY_LIMIT * 4) + suffix


class TextFormatter(logging.Formatter):
    """``2024-05-01 12:00:00,123 INFO mest.access: POST /predict 200 1.52ms model=iris ...`` for people."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)


class JsonFormatter(logging.Formatter):
    """One JSON object per line for machines: time, level, logger, message, the record's fields, traceback.

    Usable in your own logging configuration (``"()": "mest.observability.JsonFormatter"`` in ``dictConfig``).
    """

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = ACCESS_FIELDS if record.name == ACCESS_LOGGER else _OTHER_FIELDS
        attributes = record.__dict__
        for name in fields:
            if name in attributes:
                out[name] = attributes[name]
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=repr).decode("utf-8")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test capture, redirected streams)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # under the handler's lock: handle() holds it around emit()
        super().emit(record)


def configure_logging(log_format: LogFormat) -> None:
    """Give the ``mest`` logger a stderr handler in ``log_format`` unless logging is already configured.

    "Configured" means the ``mest`` logger or the root logger has a handler (``logging.basicConfig``,
    ``dictConfig``, a test runner's capture). Then Mest adds nothing and its records propagate to those
    handlers as usual. Otherwise (a bare ``gunicorn app:app``) Mest's handler prints them, at level INFO.
    Idempotent; a second call with another format switches the format of Mest's own handler.
    """
    mest_logger = logging.getLogger("mest")
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    with _CONFIGURE_LOCK:
        for handler in mest_logger.handlers:
            if getattr(handler, _DEFAULT_HANDLER, False):
                handler.setFormatter(formatter)
                return
        if mest_logger.handlers or logging.getLogger().handlers:
            return
        handler = _StderrHandler()
        setattr(handler, _DEFAULT_HANDLER, True)
        handler.setFormatter(formatter)
        mest_logger.addHandler(handler)
        if mest_logger.level == logging.NOTSET:
            mest_logger.setLevel(logging.INFO)
        mest_logger.propagate = False
