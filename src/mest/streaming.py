"""A stream of items sent to one client: framing, time limit, errors after the first item, disconnects.

:class:`ItemStream` is the body of a :class:`~mest.api.StreamingResponse`. The WSGI server iterates it in the
request's own thread or greenlet, so the user's generator runs *outside* the model queue (the queue orders
the ``infer`` call that produced the generator, not its steps; docs/streaming.md says why), and calls its
``close()`` when the response ends or the client has gone: that closes the user's generator, whose
``finally`` then runs, and frees the thread or greenlet.

HTTP has no status left to send once the first piece is out, so a failure after it ends the stream with one
error event (the JSON shape of every Mest error, request id included) and a log line with the request id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .api import StreamingResponse
from .codecs import json, sse
from .errors import GatewayTimeout, InferenceError, MestError, error_body

__all__ = ["OUTCOMES", "ItemStream", "StreamObserver", "error_event_for", "stream_headers", "streaming_response"]

logger = logging.getLogger("mest.streaming")

_REPORT_EVERY = 64
#: How a stream ended: the ``outcome`` label of ``mest_streams``.
OUTCOMES = ("completed", "client_closed", "error", "time_limit")


class StreamObserver(Protocol):
    """Receives what only the stream knows (for metrics, see :mod:`mest.observability`)."""

    def stream_first_item(self, seconds: float) -> None:
        """The first item was ready ``seconds`` after the request arrived."""

    def stream_items(self, count: int) -> None:
        """``count`` more items were handed to the server."""

    def stream_ended(self, outcome: str) -> None:
        """The stream ended; ``outcome`` is one of :data:`OUTCOMES`."""


def stream_headers(content_type: str) -> list[tuple[str, str]]:
    """Headers of every stream: never cached, and ``X-Accel-Buffering: no`` so nginx forwards each piece."""
    return [("Content-Type", content_type), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]


def error_event_for(fmt: sse.StreamFormat) -> Callable[[MestError, str], bytes]:
    """The event that ends a failed stream in ``fmt``: an SSE ``event: error`` or one NDJSON line, both
    carrying Mest's JSON error body."""

    def error_event(error: MestError, request_id: str) -> bytes:
        body = error_body(error, request_id)
        if fmt == "ndjson":
            return sse.ndjson_line(body)
        return sse.sse_event(json.dumps(body).decode("utf-8"), event="error")

    return error_event


class ItemStream:
    """Iterates a producer's items as framed ``bytes``; the server's ``close()`` closes the producer.

    Args:
        items: The producer (usually the generator ``post_process`` returned).
        encode: Frames one item.
        request_id: For the error event and log lines.
        started: ``time.perf_counter()`` when the request arrived (time to first item is measured from it).
        time_limit_s: Longest the whole stream may last; checked between items (a producer blocked inside
            one step is not interrupted), then the stream ends with a 504-shaped error event.
        error_event: Frames the event that ends a failed stream.
        trailer: Sent after the last item of a stream that completed (for example ``data: [DONE]``).
        observer: Metrics.
        label: Names the stream in log lines (``POST /count``).
    """

    __slots__ = (
        "_count",
        "_deadline",
        "_encode",
        "_error_event",
        "_finished",
        "_items",
        "_label",
        "_observer",
        "_pending",
        "_reported",
        "_request_id",
        "_started",
        "_trailer",
        "outcome",
    )

    def __init__(
        self,
        items: Iterator[Any],
        encode: Callable[[Any], bytes],
        *,
        request_id: str,
        started: float,
        time_limit_s: float | None = None,
        error_event: Callable[[MestError, str], bytes] | None = None,
        trailer: bytes = b"",
        observer: StreamObserver | None = None,
        label: str = "stream",
    ) -> None:
        self._items = items
        self._encode = encode
        self._request_id = request_id
        self._started = started
        self._deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
        self._error_event = error_event or error_event_for("sse")
        self._trailer = trailer
        self._observer = observer
        self._label = label
        self._pending: list[bytes] = []
        self._count = 0
        self._reported = 0
        self._finished = False
        #: ``None`` while the stream runs, then one of :data:`OUTCOMES`.
        self.outcome: str | None = None

    def prime(self) -> None:
        """Produce the first item now, in the handler, so a failure before it is an ordinary error response
        (its own status, JSON body) rather than an error event.

        Raises:
            Exception: Whatever the producer raised; the stream is then closed.
        """
        try:
            first = next(self._items)
        except StopIteration:
            self._complete()
            return
        except BaseException:
            self._end("error")
            raise
        self._pending.append(self._encode(first))
        self._first_item()

    def __iter__(self) -> ItemStream:
        return self

    def __next__(self) -> bytes:
        if self._pending:
            self._sent(1)
            return self._pending.pop(0)
        if self._finished:
            raise StopIteration
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return self._fail(GatewayTimeout("The stream was cut at its time limit."), "time_limit", None)
        try:
            item = next(self._items)
            chunk = self._encode(item)
        except StopIteration:
            self._complete()
            return self.__next__()
        except MestError as error:
            return self._fail(error, "error", error.__cause__)
        except Exception as exc:
            return self._fail(InferenceError("The stream failed."), "error", exc)
        if self._count == 0:
            self._first_item()
        self._sent(1)
        return chunk

    def close(self) -> None:
        """Called by the server when the response is over or the client left; closes the producer."""
        if not self._finished:
            self._end("client_closed")
            logger.info(
                "%s closed by the client after %d items [request_id=%s]", self._label, self._count,
                self._request_id, extra={"request_id": self._request_id},
            )
        self._close_items()

    # -- internals -------------------------------------------------------------------------------------

    def _first_item(self) -> None:
        if self._observer is not None:
            self._observer.stream_first_item(time.perf_counter() - self._started)

    def _sent(self, count: int) -> None:
        self._count += count
        # Reported in groups (and when the stream ends), not per item: a metric update per item would cost a
        # long stream of small items a quarter of its throughput.
        if self._observer is not None and self.outcome is None and self._count - self._reported >= _REPORT_EVERY:
            self._report()

    def _report(self) -> None:
        if self._observer is not None and self._count > self._reported:
            self._observer.stream_items(self._count - self._reported)
        self._reported = self._count

    def _complete(self) -> None:
        self._end("completed")
        if self._trailer:
            self._pending.append(self._trailer)

    def _fail(self, error: MestError, outcome: str, cause: BaseException | None) -> bytes:
        log = logger.error if outcome == "error" else logger.warning
        log(
            "%s ended after %d items: %s [request_id=%s]", self._label, self._count, error.message,
            self._request_id, exc_info=cause, extra={"request_id": self._request_id},
        )
        self._end(outcome)
        self._close_items()
        return self._error_event(error, self._request_id)

    def _end(self, outcome: str) -> None:
        if self._finished:
            return
        self._finished = True
        self.outcome = outcome
        if self._observer is not None:
            self._report()
            self._observer.stream_ended(outcome)

    def _close_items(self) -> None:
        close = getattr(self._items, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:  # a producer's failing finally must not take the worker down
            logger.exception("closing %s failed [request_id=%s]", self._label, self._request_id)


def streaming_response(stream: ItemStream, content_type: str, status: int = 200) -> StreamingResponse:
    """The response that sends ``stream`` (already primed), with :func:`stream_headers`."""
    return StreamingResponse(stream, status, stream_headers(content_type))
