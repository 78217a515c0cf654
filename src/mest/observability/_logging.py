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
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson

from .._process import PROCESS, current_pid
from ._stderr import StderrHandler

__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_LOGGER",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "access_logger",
    "access_record",
    "configure_logging",
    "describe_body",
    "direct_access_sink",
    "safe_text",
]

LogFormat = Literal["text", "json"]
ACCESS_LOGGER = "mest.access"
#: Attributes an access record carries, in the order :class:`JsonFormatter` writes them.
ACCESS_FIELDS = ("method", "route", "status", "latency_ms", "model", "batch_size", "request_id", "body")
# What every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_BODY_LIMIT = 1024
_DEFAULT_HANDLER = "_mest_default_handler"
_FORMAT_FIELD = re.compile(r"%\((\w+)\)")
_DIRECT_FIELDS = frozenset({"asctime", "levelname", "levelno", "name", "message", "process", "created", "msecs"})
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


class _SecondCache:
    """The formatted date and time of the current second, computed once a second rather than once a line."""

    __slots__ = ("_converter", "_format", "_last")

    def __init__(self, fmt: str, converter: Callable[[float | None], time.struct_time]) -> None:
        self._format = fmt
        self._converter = converter
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        last = self._last
        if last[0] != second:
            last = self._last = (second, time.strftime(self._format, self._converter(created)))
        return last[1]


class TextFormatter(logging.Formatter):
    """``2024-05-01 12:00:00,123 INFO mest.access: POST /predict 200 1.52ms model=iris ...`` for people.

    Args:
        fmt: A ``%``-style format, as for :class:`logging.Formatter`; Mest's own by default.
        datefmt: A ``strftime`` format for ``asctime``; by default logging's, with milliseconds.

    The date is formatted once per second, not once per line. When ``fmt`` uses only ``asctime``,
    ``levelname``, ``levelno``, ``name``, ``message``, ``process``, ``created`` and ``msecs`` (``mest serve``'s
    format does), an access line is formatted straight from its parts (:meth:`access_line`).
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or _TEXT_FORMAT, datefmt)
        self._seconds = _SecondCache(datefmt or self.default_time_format, self.converter)
        self._with_msecs = datefmt is None  # logging adds ",123" only to its default date format
        self.direct = set(_FORMAT_FIELD.findall(self._fmt or "")) <= _DIRECT_FIELDS
        self._access_template = _access_template(self._fmt or "") if self._with_msecs else None

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt != self.datefmt:
            return super().formatTime(record, datefmt)
        return self._time(record.created, record.msecs)

    def _time(self, created: float, msecs: float) -> str:
        stamp = self._seconds(created)
        return f"{stamp},{int(msecs):03d}" if self._with_msecs else stamp

    def access_line(self, created: float, message: str, fields: dict[str, Any] | None) -> str:
        """What :meth:`format` makes of an access record, from its parts (see :func:`direct_access_sink`)."""
        if not self.direct:
            return self.format(access_record(message, (), fields or {}, created))
        compiled = self._access_template
        if compiled is not None:  # Mest's own formats: one %-operation
            template, with_pid = compiled
            stamp, ms = self._seconds(created), int((created - int(created)) * 1000)
            return template % ((stamp, ms, PROCESS.pid, message) if with_pid else (stamp, ms, message))
        msecs = int((created - int(created)) * 1000) + 0.0
        return (self._fmt or "") % {
            "asctime": self._time(created, msecs),
            "levelname": "INFO",
            "levelno": logging.INFO,
            "name": ACCESS_LOGGER,
            "message": message,
            "process": PROCESS.pid,
            "created": created,
            "msecs": msecs,
        }


_FIELD_SPEC = re.compile(r"%\((\w+)\)([#0+ -]*[0-9]*(?:\.[0-9]+)?[diouxXeEfFgGcrsa])")
_STATIC_FIELDS = {"levelname": "INFO", "levelno": logging.INFO, "name": ACCESS_LOGGER}


def _access_template(fmt: str) -> tuple[str, bool] | None:
    """``fmt`` for access lines with its fixed fields filled in, leaving ``%s,%03d`` for the time, then the
    process id if ``fmt`` shows it (the second item says whether), then the message; ``None`` when ``fmt``
    uses other fields or another order (the general path formats those). Why: an access line is written per
    request, and one ``%`` with three or four values costs a third of building logging's eight-field
    dictionary and formatting the time on its own (mest serve's and the default formats both qualify)."""
    dynamic: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2)
        if name in _STATIC_FIELDS:
            return (("%" + spec) % _STATIC_FIELDS[name]).replace("%", "%%")
        dynamic.append(name if name != "asctime" or spec == "s" else "asctime with a width")
        return "%s,%03d" if name == "asctime" else "%" + spec

    template = _FIELD_SPEC.sub(fill, fmt)
    if "%(" in template or dynamic not in (["asctime", "message"], ["asctime", "process", "message"]):
        return None
    return template, "process" in dynamic


class JsonFormatter(logging.Formatter):
    """One JSON object per line for machines: time, level, logger, message, the record's fields, traceback.

    Usable in your own logging configuration (``"()": "mest.observability.JsonFormatter"`` in ``dictConfig``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seconds = _SecondCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def _head(self, created: float, level: str, logger: str, pid: int | None, message: str) -> dict[str, Any]:
        return {
            "time": f"{self._seconds(created)}.{int(created % 1 * 1000):03d}Z",
            "level": level,
            "logger": logger,
            "pid": pid,
            "message": message,
        }

    def access_line(self, created: float, message: str, fields: dict[str, Any] | None) -> str:
        """What :meth:`format` makes of an access record, from its parts (see :func:`direct_access_sink`)."""
        out = self._head(created, "INFO", ACCESS_LOGGER, PROCESS.pid, message)
        if fields:
            out.update(fields)
        return orjson.dumps(out, default=repr).decode("utf-8")

    def format(self, record: logging.LogRecord) -> str:
        out = self._head(record.created, record.levelname, record.name, record.process, record.getMessage())
        attributes = record.__dict__
        if record.name == ACCESS_LOGGER:
            for name in ACCESS_FIELDS:
                if name in attributes:
                    out[name] = attributes[name]
        else:  # any other line: every field passed as ``extra`` (the start-up line's urls, workers, routes)
            for name, value in attributes.items():
                if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                    out[name] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=repr).decode("utf-8")


_mest_logger = logging.getLogger("mest")


FormatLine = Callable[[float, str, "dict[str, Any] | None"], str]


def direct_access_sink() -> tuple[StderrHandler, FormatLine, bool] | None:
    """Where an access line can go without :mod:`logging`'s per-record machinery; ``None`` when it cannot.

    That is when Mest's buffered :class:`StderrHandler` is all that would see an access record: no handler or
    filter on ``mest.access``, and on ``mest`` only that handler (installed by :func:`configure_logging` with
    no configuration, or by ``mest serve``'s). Returns the handler, the function that turns
    ``(created, message, fields)`` into the line its formatter would write, and whether that function needs
    the fields (the text formats only print the message). Checked on every request (a few attribute reads), so
    any other configuration gets ordinary records.
    """
    if access_logger.handlers or access_logger.filters or not access_logger.propagate:
        return None
    mest_logger = _mest_logger
    handlers = mest_logger.handlers
    if len(handlers) != 1 or mest_logger.filters or mest_logger.propagate:
        return None
    handler = handlers[0]
    if type(handler) is not StderrHandler or handler.filters or handler.level > logging.INFO:
        return None
    formatter = handler.formatter
    if type(formatter) is TextFormatter:
        return handler, formatter.access_line, not formatter.direct
    if type(formatter) is JsonFormatter:
        return handler, formatter.access_line, True
    return handler, _record_formatter(formatter or _DEFAULT_FORMATTER), True


_DEFAULT_FORMATTER = logging.Formatter()
_record_formatters: dict[int, tuple[logging.Formatter, FormatLine]] = {}


def _record_formatter(formatter: logging.Formatter) -> FormatLine:
    """For any other formatter: build the record when the line is written, and let the formatter format it."""
    cached = _record_formatters.get(id(formatter))
    if cached is None or cached[0] is not formatter:

        def format_line(created: float, message: str, fields: dict[str, Any] | None) -> str:
            return formatter.format(access_record(message, (), fields or {}, created))

        cached = _record_formatters[id(formatter)] = (formatter, format_line)
    return cached[1]


def access_record(
    msg: str, args: tuple[object, ...], fields: dict[str, Any], created: float | None = None
) -> logging.LogRecord:
    """An INFO record of the ``mest.access`` logger, as ``Logger.makeRecord`` would build it, minus its costs.

    ``LogRecord.__init__`` asks the kernel for the pid and walks the path of the source file on every call;
    per request on a loaded worker that is a system call and a few microseconds for values that never change
    within a process. Here they are computed once per process and copied. A record factory installed with
    :func:`logging.setLogRecordFactory` is respected (then the record is built the standard way). ``created``
    is the time of the request's line when the record is built later than that.
    """
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return access_logger.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, msg, args, None, None, fields)
    record: logging.LogRecord = logging.LogRecord.__new__(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(_process_attributes())
    if created is None:
        created = time.time()
    attributes["msg"] = msg
    attributes["args"] = args
    attributes["created"] = created
    attributes["msecs"] = int((created - int(created)) * 1000) + 0.0
    attributes["relativeCreated"] = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
    if logging.logThreads:
        attributes["thread"] = threading.get_ident()
        attributes["threadName"] = threading.current_thread().name
    attributes.update(fields)
    return record


_process_cache: tuple[int, dict[str, Any]] = (-1, {})


def _process_attributes() -> dict[str, Any]:
    """The attributes of an access record that are the same for every record of this process."""
    global _process_cache
    pid = current_pid()
    if _process_cache[0] == pid:
        return _process_cache[1]
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "", (), None, None, None)
    attributes = dict(record.__dict__)
    for per_record in ("msg", "args", "created", "msecs", "relativeCreated"):
        attributes.pop(per_record, None)
    _process_cache = (pid, attributes)
    return attributes


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
        handler = StderrHandler()
        setattr(handler, _DEFAULT_HANDLER, True)
        handler.setFormatter(formatter)
        mest_logger.addHandler(handler)
        if mest_logger.level == logging.NOTSET:
            mest_logger.setLevel(logging.INFO)
        mest_logger.propagate = False
