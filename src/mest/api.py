"""Mest's own request and response: the only objects predictors and web-framework adapters exchange.

They carry no I/O and know nothing of any web framework, so the same predictor runs unchanged behind falcon,
plain WSGI or any adapter a user writes. This module imports nothing of mest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import parse_qsl

__all__ = ["BodyIncomplete", "BodyTooLarge", "Headers", "Request", "Response", "StreamingResponse"]

#: Bytes read at a time when a body is discarded (:meth:`Request.finish_body`).
_DRAIN_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The request body is larger than the limit the reader was given."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


class BodyIncomplete(Exception):
    """The client stopped sending the request body: it stalled past the server's body timeout, or went away.

    Attributes:
        timed_out: ``True`` when the server's idle timeout expired (answer 408), ``False`` when the
            connection failed or ended before the declared length arrived.
    """

    def __init__(self, timed_out: bool) -> None:
        super().__init__(
            "the request body stalled: no data within the server's body timeout"
            if timed_out
            else "the request body ended before its declared length"
        )
        self.timed_out = timed_out


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of HTTP headers.

    Keys are stored lower-cased once at construction, so each look-up is one dict access.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            # Repeated headers are joined as RFC 9110 allows for list-valued fields.
            self._items[key] = f"{self._items[key]}, {value}" if key in self._items else value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request:
    """An HTTP request as Mest sees it, handed to ``pre_process`` and ``post_process`` as ``req``.

    The body is read lazily and at most once: endpoints that never look at it (health, metrics) never pay
    for it, and an oversized body is refused after reading no more than the limit.

    Attributes:
        method: Upper-case HTTP method.
        path: URL path, percent-decoded, without the query string.
        headers: Case-insensitive request headers.
        query_string: The raw query string (without ``?``).
        client_addr: The peer's address as the server reports it, or ``None``.
        max_body_size: Largest body, in bytes, that reading :attr:`body` accepts (set by Mest from its
            settings before any handler runs); ``None`` for no limit.
        request_id: Set by Mest before any handler runs; echoed as ``X-Request-ID``.
        context: Free-form per-request storage shared by Mest's stages and user code (for example
            ``req.context["parameters"]`` for Open Inference Protocol parameters).
    """

    __slots__ = (
        "_body",
        "_content_length",
        "_left",
        "_query",
        "_stream",
        "client_addr",
        "context",
        "headers",
        "max_body_size",
        "method",
        "path",
        "query_string",
        "request_id",
    )

    def __init__(
        self,
        method: str,
        path: str,
        *,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] = (),
        query_string: str = "",
        body: bytes | None = None,
        stream: BinaryIO | None = None,
        content_length: int | None = None,
        max_body_size: int | None = None,
        client_addr: str | None = None,
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.query_string = query_string
        self.client_addr = client_addr
        self.request_id = ""
        self.context: dict[str, Any] = {}
        self._body = body
        self._stream = stream
        self._content_length = content_length
        # Bytes of the body still unread: the declared length, or -1 when unknown (chunked) and 0 when
        # nothing is left; None when the connection can no longer be trusted (a read failed).
        self._left: int | None = 0 if stream is None else (-1 if content_length is None else content_length)
        self.max_body_size = max_body_size
        self._query: dict[str, str] | None = None

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower-cased and without parameters such as ``charset``."""
        raw = self.headers.get("content-type")
        if not raw:
            return None
        return raw.split(";", 1)[0].strip().lower() or None

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; for a repeated name the last value wins."""
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query

    @property
    def content_length(self) -> int | None:
        """The declared ``Content-Length``, or the body's length once it has been read."""
        if self._body is not None:
            return len(self._body)
        return self._content_length

    @property
    def body(self) -> bytes:
        """The raw request body.

        Raises:
            BodyTooLarge: The declared or actual body exceeds the configured limit. The check on the
                declared length happens before a single byte is read.
        """
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        limit = self.max_body_size
        length = self._content_length
        stream = self._stream
        if stream is None:
            return b""
        if length is not None:
            if limit is not None and length > limit:
                raise BodyTooLarge(limit)
            data = self._read(stream, length) if length > 0 else b""
            self._left = 0 if self._left is not None else None
            if len(data) < length:  # the client closed its side before sending the whole body
                self._left = None
                raise BodyIncomplete(timed_out=False)
            return data
        # No Content-Length (chunked): read one byte past the limit to know whether it was crossed.
        data = self._read(stream, -1 if limit is None else limit + 1)
        if limit is not None and len(data) > limit:
            raise BodyTooLarge(limit)
        self._left = 0 if self._left is not None else None
        return data

    def _read(self, stream: BinaryIO, size: int) -> bytes:
        """``stream.read(size)``, with a stalled or broken connection reported as :class:`BodyIncomplete`."""
        try:
            return stream.read(size)
        except TimeoutError as exc:  # the server's socket timeout (mest serve --body-timeout)
            self._left = None
            raise BodyIncomplete(timed_out=True) from exc
        except (OSError, ValueError) as exc:  # a reset, a server's own "incomplete body" error, a closed file
            self._left = None
            raise BodyIncomplete(timed_out=False) from exc

    def finish_body(self, max_bytes: int, max_seconds: float) -> bool:
        """Read and discard what is left of the body, so that an answer given before reading it arrives.

        Why: a client that sends its whole body before reading the response (``urllib``, ``http.client``,
        ``curl`` without ``Expect``) gets a TCP reset instead of the answer when the server closes the
        connection with unread data; draining it, bounded, is what Go's net/http and nginx's lingering close
        do. Called by Mest after every handler.

        Args:
            max_bytes: Discard at most this many bytes; a larger declared body is not read at all.
            max_seconds: Stop discarding after this long (each read also waits at most the server's body
                timeout).

        Returns:
            Whether the connection may be kept open: the whole body was read. ``False`` means the server must
            close it (Mest then answers with ``Connection: close``).
        """
        left = self._left
        if left == 0:
            return True
        if left is None or self._stream is None or left > max_bytes:
            return False
        stream = self._stream
        deadline = time.monotonic() + max_seconds
        budget = max_bytes if left < 0 else left
        try:
            while budget > 0 and time.monotonic() < deadline:
                data = stream.read(min(_DRAIN_CHUNK, budget))
                if not data:
                    break
                budget -= len(data)
            else:
                if left < 0 or budget > 0:  # a chunked body beyond the bound, or out of time
                    self._left = None
                    return False
        except (OSError, ValueError):
            self._left = None
            return False
        if left >= 0 and budget > 0:  # EOF before the declared length: the client is gone
            self._left = None
            return False
        self._left = 0
        return True

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} id={self.request_id!r}>"


class Response:
    """What an endpoint answers; ``post_process`` may return one to choose the status and headers.

    Args:
        body: ``bytes`` are sent as they are (``application/octet-stream`` unless a ``Content-Type`` header
            says otherwise); ``str`` is sent UTF-8 encoded (``text/plain`` by default); anything else is
            serialized as JSON, numpy arrays and scalars included.
        status: The HTTP status code.
        headers: Extra response headers.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.body = body
        self.status = int(status)
        if headers is None:
            self.headers: list[tuple[str, str]] = []
        elif isinstance(headers, Mapping):
            self.headers = list(headers.items())
        else:
            self.headers = list(headers)

    def get_header(self, name: str) -> str | None:
        """The first value of a header, compared case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class StreamingResponse(Response):
    """A response whose body is sent piece by piece, as it is produced (Server-Sent Events, NDJSON).

    Mest never renders it to one ``bytes`` value: adapters hand :attr:`body` to the WSGI server as the
    response iterable (no ``Content-Length``), so each piece reaches the client as soon as it is yielded.
    Why the server must get the object itself: PEP 3333 servers call its ``close()`` when the response ends
    or the client goes away, which is how a disconnect reaches the producer (a generator's ``finally`` runs).

    Args:
        body: An iterable of ``bytes`` pieces; if it has a ``close()`` method, the server calls it.
        status: The HTTP status code.
        headers: Response headers (``Content-Type`` included; nothing is added for you).
    """

    __slots__ = ()

    def __init__(
        self,
        body: Iterable[bytes],
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(body, status, headers)

    def close(self) -> None:
        """Close the body (for a handler that drops the response before any server has it)."""
        close = getattr(self.body, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status}>"
