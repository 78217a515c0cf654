"""Framing of streamed items: Server-Sent Events and newline-delimited JSON (NDJSON).

Kept apart from the stream's control flow (:mod:`mest.streaming`) so protocol providers (OpenAI, Triton's
generate extension) frame their own events with the same few functions.
"""

from __future__ import annotations

from typing import Any, Literal

from . import json

__all__ = [
    "NDJSON_CONTENT_TYPE",
    "SSE_CONTENT_TYPE",
    "StreamFormat",
    "choose_format",
    "content_type",
    "encode_item",
    "ndjson_line",
    "sse_event",
]

SSE_CONTENT_TYPE = "text/event-stream"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
#: Media types a client may ask for to get NDJSON instead of SSE.
_NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines")

StreamFormat = Literal["sse", "ndjson"]


def sse_event(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event; a multi-line ``data`` becomes several ``data:`` lines, as the format requires."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def ndjson_line(item: Any) -> bytes:
    """One NDJSON line: the item as JSON (orjson never emits a raw newline inside a document)."""
    return json.dumps(item) + b"\n"


def encode_item(item: Any, fmt: StreamFormat) -> bytes:
    """One item of a predictor's stream in ``fmt``.

    In SSE a ``str`` item is sent as the event's text as it is (so a token streamer's pieces arrive as plain
    text) and anything else as JSON; in NDJSON every item is a JSON document (a ``str`` a JSON string).

    Raises:
        TypeError: The item has no JSON form.
    """
    if fmt == "ndjson":
        return ndjson_line(item)
    if isinstance(item, str):
        return sse_event(item)
    # orjson never writes a raw line break inside a document, so it is one ``data:`` line as it is.
    return b"data: " + json.dumps(item) + b"\n\n"


def choose_format(accept: str | None, preferred: StreamFormat | None = None) -> StreamFormat:
    """The stream's format: the predictor's choice if it made one, else NDJSON when the client's ``Accept``
    asks for it (and not for SSE), else SSE."""
    if preferred is not None:
        return preferred
    if accept:
        lowered = accept.lower()
        if SSE_CONTENT_TYPE not in lowered and any(t in lowered for t in _NDJSON_TYPES):
            return "ndjson"
    return "sse"


def content_type(fmt: StreamFormat) -> str:
    """The ``Content-Type`` of a stream in ``fmt``."""
    return NDJSON_CONTENT_TYPE if fmt == "ndjson" else f"{SSE_CONTENT_TYPE}; charset=utf-8"
