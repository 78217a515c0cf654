"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, one request in flight on each.

The engine behind ``mest bench`` (and ``bench/``'s scripts). Single-threaded and dependency-free:
``selectors`` over non-blocking sockets, each request's bytes built once, so one core drives tens of
thousands of requests/s against a trivial server and the generator is rarely the bottleneck (the result
says how much of its core it used, ``client_cpu``).

Each connection sends a request, waits for the whole response, and sends the next one at once (closed loop:
the offered load adapts to the server, like N users clicking as fast as the server answers). Requests started
during the warm-up are not measured. A request's latency runs from the moment the client starts it (opening a
connection first when the server closed the previous one, as gunicorn's sync workers do after every response)
to the last byte of its response. A 2xx response is a success; any other status, a broken connection, an
unparsable response or a request older than ``request_timeout_s`` is an error, counted by name (``"404"``,
``"ConnectionResetError"``, ``"client_timeout"``) and not part of the latencies. Responses may be framed by
``Content-Length``, chunked, or by the server closing the connection. Plain ``http://`` only.
"""

from __future__ import annotations

import errno
import math
import resource
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

__all__ = ["Checker", "LoadError", "LoadResult", "Progress", "run_load"]

# Validates a 2xx response body for request number i; returns an error name or None.
Checker = Callable[[int, bytes], "str | None"]

_CONNECTING, _SENDING, _RECEIVING, _IDLE = range(4)
_UNTIL_CLOSE = -3  # response framing: the body ends when the server closes the connection
_CHUNKED = -2
_RETRY_AFTER_S = 0.05  # a connection that could not be opened is retried after this pause
_HOUSEKEEPING_S = 0.05  # how often timeouts, retries and progress are looked at


class LoadError(Exception):
    """The run could not start: the URL is not usable or the server cannot be reached at all."""


class _BadResponse(ValueError):
    """The server's answer is not HTTP/1.x the generator can frame."""


@dataclass(frozen=True)
class Progress:
    """Where a run stands, given to the ``progress`` callback a few times a second."""

    concurrency: int
    phase: str  # "warmup", then "measure"
    elapsed_s: float  # seconds into the phase
    phase_s: float  # length of the phase
    requests: int  # successful responses measured so far (0 during the warm-up)
    errors: int  # errors measured so far


@dataclass
class LoadResult:
    """What one closed-loop run measured (warm-up excluded)."""

    concurrency: int
    duration_s: float
    requests: int  # successful (2xx) responses
    errors: dict[str, int]  # by status ("404") or exception name ("ConnectionResetError", "client_timeout")
    latencies_ms: list[float] = field(repr=False)  # of the successful responses, in completion order
    window: tuple[float, float] = (0.0, 0.0)  # wall-clock (time.time()) start and end of the measurement
    # Requests still unanswered when the run ended, and the age of the oldest: a server that serves some
    # connections and starves others shows good percentiles over the answered ones, and a large age here.
    unfinished: int = 0
    oldest_unfinished_ms: float = 0.0
    #: CPU seconds the generator's process used during the measurement; near ``duration_s`` means the
    #: client, not the server, may have been the limit.
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        """Successful responses per second."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def client_cpu(self) -> float:
        """Share of one core the generator used during the measurement (0 to 1)."""
        return self.client_cpu_s / self.duration_s if self.duration_s > 0 else 0.0

    @cached_property
    def _sorted(self) -> list[float]:
        return sorted(self.latencies_ms)

    def percentile(self, q: float) -> float:
        """The nearest-rank ``q``-th percentile of the latencies in ms (NaN without any success)."""
        data = self._sorted
        if not data:
            return float("nan")
        return data[min(len(data), max(1, math.ceil(q / 100.0 * len(data)))) - 1]

    def summary(self) -> dict[str, object]:
        """The result as JSON-ready numbers (latencies in ms; ``None`` where nothing succeeded)."""
        lat = self.latencies_ms

        def ms(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 3)

        return {
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": ms(self.percentile(50)),
            "p90_ms": ms(self.percentile(90)),
            "p99_ms": ms(self.percentile(99)),
            "max_ms": ms(self.percentile(100)),
            "min_ms": ms(self._sorted[0]) if lat else None,
            "mean_ms": round(sum(lat) / len(lat), 3) if lat else None,
            "errors": dict(self.errors),
            "window": [round(self.window[0], 6), round(self.window[1], 6)],
            "unfinished": self.unfinished,
            "oldest_unfinished_ms": round(self.oldest_unfinished_ms, 1),
            "client_cpu": round(self.client_cpu, 3),
        }


# -- requests ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    requests: list[bytes]
    head_only: bool  # a HEAD request: responses carry no body whatever their headers say


def _build_requests(
    method: str, authority: str, target: str, bodies: Sequence[bytes], headers: Sequence[tuple[str, str]]
) -> list[bytes]:
    names = {name.lower() for name, _ in headers}
    for name, value in headers:
        if not name or any(c in name for c in " :\r\n") or "\r" in value or "\n" in value:
            raise ValueError(f"invalid header {name!r}: {value!r}")
    head = f"{method} {target} HTTP/1.1\r\n"
    if "host" not in names:
        head += f"Host: {authority}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    if bodies and "content-type" not in names:
        head += "Content-Type: application/json\r\n"
    if not bodies:
        no_body = method in ("GET", "HEAD", "DELETE", "OPTIONS")
        return [(head + ("\r\n" if no_body else "Content-Length: 0\r\n\r\n")).encode("latin-1")]
    return [(head + f"Content-Length: {len(b)}\r\n\r\n").encode("latin-1") + b for b in bodies]


def _target(url: str, method: str, bodies: Sequence[bytes], headers: Sequence[tuple[str, str]]) -> _Target:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise LoadError(f"only http:// URLs are supported, not {url!r}")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise LoadError(f"invalid port in {url!r}") from exc
    host = parts.hostname or ""
    if not host:
        raise LoadError(f"no host in {url!r}")
    authority = parts.netloc.rpartition("@")[2]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    requests = _build_requests(method.upper(), authority, target, bodies, headers)
    return _Target(host, port, requests, method.upper() == "HEAD")


def _raise_fd_limit(needed: int) -> None:
    """Raise the soft limit on open files to fit ``needed`` sockets, if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise LoadError(f"{needed} connections need {want} open files; the limit is {hard} (ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# -- connections ---------------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("buf", "close_after", "events", "index", "need", "out", "scan", "sent", "sock", "started",
                 "state", "status")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.events = 0  # what the selector watches on sock (0: not registered)
        self.state = _IDLE
        self.started = 0.0  # when the current request (or the wait before retrying) began
        self.index = 0
        self.out = memoryview(b"")
        self.sent = 0
        self.buf = bytearray()
        self.need = -1  # total bytes of the response once its head is parsed, or _CHUNKED / _UNTIL_CLOSE
        self.scan = 0  # chunked: where the next chunk-size line starts
        self.status = 0
        self.close_after = False


def _parse_head(conn: _Conn, head_only: bool) -> bool:
    """Parse the status line and framing headers once the head is complete; False while incomplete."""
    while True:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > 65536:
                raise _BadResponse("response head over 64 KiB")
            return False
        lines = bytes(conn.buf[:end]).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        try:
            status = int(rest[:3])
        except ValueError:
            raise _BadResponse(f"not an HTTP status line: {lines[0][:80]!r}") from None
        if not version.startswith("HTTP/1."):
            raise _BadResponse(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        if 100 <= status < 200:  # an interim response (100 Continue): the real one follows
            del conn.buf[: end + 4]
            continue
        break
    _frame(conn, lines[1:], end + 4, status, close=version == "HTTP/1.0", head_only=head_only)
    return True


def _frame(conn: _Conn, fields: list[str], body_at: int, status: int, *, close: bool, head_only: bool) -> None:
    """Work out where the response ends (``conn.need``) and whether the server closes the connection after it."""
    length, chunked = None, False
    for line in fields:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":  # HTTP/1.1 closes on "close"; HTTP/1.0 closes unless "keep-alive"
            close = "keep-alive" not in value.lower() if close else "close" in value.lower()
    conn.status, conn.close_after = status, close
    if head_only or status in (204, 304):
        conn.need = body_at
    elif chunked:
        conn.need, conn.scan = _CHUNKED, body_at
    elif length is not None:
        conn.need = body_at + length
    else:
        conn.need, conn.close_after = _UNTIL_CLOSE, True


def _chunked_done(conn: _Conn) -> bool:
    """Walk the chunks received so far; once the last one (and any trailer) is in, set ``need``."""
    buf = conn.buf
    while True:
        eol = buf.find(b"\r\n", conn.scan)
        if eol < 0:
            return False
        try:
            size = int(bytes(buf[conn.scan : eol]).split(b";", 1)[0], 16)
        except ValueError:
            raise _BadResponse("invalid chunk size") from None
        if size == 0:
            if buf[eol + 2 : eol + 4] == b"\r\n":
                conn.need = eol + 4
                return True
            trailer_end = buf.find(b"\r\n\r\n", eol + 2)
            if trailer_end < 0:
                return False
            conn.need = trailer_end + 4
            return True
        if len(buf) < eol + 2 + size + 2:
            return False
        conn.scan = eol + 2 + size + 2


def _body(conn: _Conn) -> bytes:
    """The body of the complete response in ``conn.buf``, de-chunked."""
    start = conn.buf.find(b"\r\n\r\n") + 4
    raw = bytes(conn.buf[start : conn.need])
    if conn.scan == 0:  # not chunked
        return raw
    out, pos = bytearray(), 0
    while True:
        eol = raw.index(b"\r\n", pos)
        size = int(raw[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += raw[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


# -- the event loop ------------------------------------------------------------------------------------


class _Runner:
    """The event loop of one run: keeps one request in flight per connection."""

    def __init__(self, target: _Target, check: Checker | None, timeout_s: float) -> None:
        self.target, self.check, self.timeout_s = target, check, timeout_s
        self.requests = target.requests
        self.sel = selectors.DefaultSelector()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.counter = 0
        self.conns: list[_Conn] = []
        self.measure_from = self.end = math.inf
        # Where the first connection got through (of the host's addresses); every later one goes there too.
        self.family: int = socket.AF_INET
        self.address: object = None

    # connections

    def open(self, concurrency: int) -> None:
        """Connect the first connection synchronously, so an unreachable server fails the run at once."""
        t = self.target
        try:
            sock = socket.create_connection((t.host, t.port), timeout=min(self.timeout_s, 10.0))
        except socket.gaierror as exc:
            raise LoadError(f"cannot resolve {t.host!r}: {exc.strerror}") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise LoadError(f"cannot connect to {t.host}:{t.port}: {reason}") from None
        self.family, self.address = sock.family, sock.getpeername()
        first = _Conn()
        self._adopt(first, sock)
        self.conns = [first] + [_Conn() for _ in range(concurrency - 1)]

    def _adopt(self, conn: _Conn, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock = sock
        conn.events = selectors.EVENT_WRITE
        self.sel.register(sock, conn.events, conn)

    def _drop(self, conn: _Conn) -> None:
        if conn.sock is not None:
            if conn.events:
                self.sel.unregister(conn.sock)
            conn.sock.close()
            conn.sock, conn.events = None, 0

    def close(self) -> None:
        for conn in self.conns:
            self._drop(conn)
        self.sel.close()

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events != events and conn.sock is not None:
            self.sel.modify(conn.sock, events, conn)
            conn.events = events

    # one request

    def start(self, conn: _Conn, now: float) -> None:
        """Begin the next request on ``conn``: connect first if it has no connection."""
        conn.index = self.counter
        self.counter += 1
        conn.started = now
        conn.out = memoryview(self.requests[conn.index % len(self.requests)])
        conn.sent = 0
        conn.buf.clear()
        conn.need, conn.scan, conn.status, conn.close_after = -1, 0, 0, False
        if conn.sock is not None:
            conn.state = _SENDING
            self.send(conn)
            return
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(self.address)  # type: ignore[arg-type]
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            sock.close()
            self.fail(conn, type(OSError(err, "")).__name__, retry_after=_RETRY_AFTER_S)
            return
        self._adopt(conn, sock)
        conn.state = _CONNECTING

    def send(self, conn: _Conn) -> None:
        assert conn.sock is not None
        try:
            conn.sent += conn.sock.send(conn.out[conn.sent :])
        except BlockingIOError:
            pass
        except OSError as exc:
            self.fail(conn, type(exc).__name__)
            return
        if conn.sent >= len(conn.out):
            conn.state = _RECEIVING
            self._watch(conn, selectors.EVENT_READ)
        else:  # a large body: wait for room, and watch for an early answer (413) too
            self._watch(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def receive(self, conn: _Conn) -> bool:
        """Read what arrived; True once the whole response is in."""
        assert conn.sock is not None
        chunk = conn.sock.recv(262144)
        if not chunk:
            if conn.need == _UNTIL_CLOSE:
                conn.need = len(conn.buf)
                return True
            raise ConnectionResetError("the server closed the connection")
        conn.buf += chunk
        if conn.need == -1 and not _parse_head(conn, self.target.head_only):
            return False
        if conn.need == _CHUNKED:
            return _chunked_done(conn)
        if conn.need == _UNTIL_CLOSE:
            return False
        if len(conn.buf) > conn.need:
            raise _BadResponse("more bytes than the response announced")
        return len(conn.buf) == conn.need

    def fail(self, conn: _Conn, name: str, retry_after: float = 0.0) -> None:
        """Count an error (if measured), drop the connection; the next request starts after ``retry_after``."""
        now = time.perf_counter()
        if self.measure_from <= conn.started <= self.end:
            self.errors[name] += 1
        self._drop(conn)
        conn.state = _IDLE
        conn.started = now + retry_after

    def complete(self, conn: _Conn, done: float) -> None:
        if self.measure_from <= conn.started and done <= self.end:
            if not 200 <= conn.status < 300:
                self.errors[str(conn.status)] += 1
            else:
                problem = self.check(conn.index, _body(conn)) if self.check is not None else None
                if problem is None:
                    self.latencies.append((done - conn.started) * 1000.0)
                else:
                    self.errors[problem] += 1
        if conn.close_after or conn.state == _SENDING:  # closing, or answered before the body was all sent
            self._drop(conn)
        self.start(conn, done)

    def on_event(self, conn: _Conn, mask: int) -> None:
        if conn.state == _CONNECTING:
            assert conn.sock is not None
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(conn, type(OSError(err, "")).__name__, retry_after=_RETRY_AFTER_S)
                return
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.state = _SENDING
            self.send(conn)
            return
        if mask & selectors.EVENT_READ:
            try:
                complete = self.receive(conn)
            except (OSError, ValueError) as exc:
                self.fail(conn, type(exc).__name__.lstrip("_"))
                return
            if complete:
                self.complete(conn, time.perf_counter())
                return
        if conn.state == _SENDING and mask & selectors.EVENT_WRITE:
            self.send(conn)

    def housekeeping(self, now: float) -> None:
        """Give up on requests past the timeout; start requests on connections whose pause is over."""
        for conn in self.conns:
            if conn.state == _IDLE:
                if now >= conn.started:
                    self.start(conn, now)
            elif now - conn.started > self.timeout_s:
                self.fail(conn, "client_timeout")
                self.start(conn, now)

    def loop(
        self, concurrency: int, warmup_s: float, duration_s: float, progress: Callable[[Progress], None] | None,
        progress_interval_s: float,
    ) -> float:
        """Run the warm-up and the measurement; return the CPU seconds the process used in the measurement."""
        start = time.perf_counter()
        self.measure_from = start + warmup_s
        self.end = self.measure_from + duration_s
        for conn in self.conns:
            conn.started = start
        self.housekeeping(start)
        cpu_start = time.process_time() if warmup_s <= 0 else None
        next_chores = next_report = start
        while (now := time.perf_counter()) < self.end:
            for key, mask in self.sel.select(timeout=max(0.0, min(next_chores, self.end) - now)):
                self.on_event(key.data, mask)
            now = time.perf_counter()
            if now < next_chores:
                continue
            next_chores = now + _HOUSEKEEPING_S
            if cpu_start is None and now >= self.measure_from:
                cpu_start = time.process_time()
            self.housekeeping(now)
            if progress is not None and now >= next_report:
                next_report = now + progress_interval_s
                progress(self._progress(concurrency, now, warmup_s, duration_s))
        cpu = time.process_time() - (cpu_start if cpu_start is not None else time.process_time())
        if progress is not None:
            progress(self._progress(concurrency, self.end, warmup_s, duration_s))
        return cpu

    def _progress(self, concurrency: int, now: float, warmup_s: float, duration_s: float) -> Progress:
        if now < self.measure_from:
            return Progress(concurrency, "warmup", now - (self.measure_from - warmup_s), warmup_s, 0, 0)
        # At the end, exactly the phase's length (end - start can differ from it in the last bit of a float).
        elapsed = duration_s if now >= self.end else min(duration_s, now - self.measure_from)
        return Progress(concurrency, "measure", elapsed, duration_s, len(self.latencies), sum(self.errors.values()))


def run_load(
    url: str,
    bodies: Sequence[bytes] = (),
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 2.0,
    check: Checker | None = None,
    request_timeout_s: float = 30.0,
    method: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 0.1,
) -> LoadResult:
    """Drive ``url`` with ``concurrency`` closed-loop connections for ``warmup_s`` then ``duration_s`` seconds.

    Args:
        url: an ``http://`` URL, any host (``bench/`` only ever points it at loopback).
        bodies: request bodies, sent round-robin: request number ``i`` (counted over all connections, warm-up
            included) carries ``bodies[i % len(bodies)]``. None: requests without a body.
        concurrency: connections, each with one request in flight.
        duration_s: measured seconds.
        warmup_s: unmeasured seconds first.
        check: called as ``check(i, body)`` on every measured 2xx response; a returned string is counted as
            an error of that name instead of a success.
        request_timeout_s: a request unanswered this long is an error (``client_timeout``) and its connection
            is replaced.
        method: the HTTP method; ``POST`` when there are bodies, ``GET`` otherwise.
        headers: extra request headers (``[("X-API-Key", "...")]``); ``Content-Type`` defaults to
            ``application/json`` when there are bodies.
        progress: called about every ``progress_interval_s`` seconds, and once at the end.
        progress_interval_s: see ``progress``.

    Returns:
        What the measurement saw.

    Raises:
        LoadError: the URL is not ``http://``, its host does not resolve, or the first connection fails.
        ValueError: an invalid header or argument.
    """
    if concurrency < 1 or duration_s <= 0 or warmup_s < 0 or request_timeout_s <= 0:
        raise ValueError("concurrency >= 1, duration_s > 0, warmup_s >= 0 and request_timeout_s > 0 are required")
    target = _target(url, method or ("POST" if bodies else "GET"), bodies, headers)
    _raise_fd_limit(concurrency)
    runner = _Runner(target, check, request_timeout_s)
    try:
        runner.open(concurrency)
        cpu_s = runner.loop(concurrency, warmup_s, duration_s, progress, progress_interval_s)
        # Every connection has one request in flight (or is pausing before a retry, which is not a request).
        ages = [max(0.0, runner.end - c.started) for c in runner.conns if c.state != _IDLE]
    finally:
        runner.close()
    wall_offset = time.time() - time.perf_counter()
    return LoadResult(
        concurrency,
        duration_s,
        len(runner.latencies),
        dict(runner.errors),
        runner.latencies,
        (runner.measure_from + wall_offset, runner.end + wall_offset),
        unfinished=len(ages),
        oldest_unfinished_ms=1000.0 * max(ages, default=0.0),
        client_cpu_s=cpu_s,
    )
