"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, one request in flight on each.

Single-threaded and dependency-free (``selectors`` over non-blocking sockets, request bytes built once), so
one core drives a few thousand requests/s and the generator is rarely the bottleneck; ``bench/batching.py``
pins it to its own core. Loopback only: the URL's host must be 127.0.0.1, localhost or ::1.

Each connection sends a request, waits for the whole response, and sends the next one at once (closed loop:
the offered load adapts to the server, like N users clicking as fast as the server answers). Requests sent
during the warm-up are not measured. Latency is measured from the first byte sent to the last byte received.

Usage::

    python bench/loadgen.py http://127.0.0.1:8000/embed --body '{"text": "hello"}' -c 64 -d 10 -w 3

prints one JSON object: requests, rps, p50_ms, p99_ms, mean_ms, errors (by status or exception name).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["LoadResult", "run_load"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Validates a 2xx response body for request number i; returns an error name or None.
Checker = Callable[[int, bytes], "str | None"]


@dataclass
class LoadResult:
    """What one closed-loop run measured (warm-up excluded)."""

    concurrency: int
    duration_s: float
    requests: int
    errors: dict[str, int]
    latencies_ms: list[float] = field(repr=False)
    window: tuple[float, float] = (0.0, 0.0)  # wall-clock (time.time()) start and end of the measurement
    # Requests still unanswered when the run ended, and the age of the oldest: a server that serves some
    # connections and starves others shows good percentiles over the answered ones, and a large age here.
    unfinished: int = 0
    oldest_unfinished_ms: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        rank = min(len(data) - 1, max(0, round(q / 100.0 * len(data) + 0.5) - 1))
        return data[rank]

    def summary(self) -> dict[str, object]:
        lat = self.latencies_ms
        return {
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "mean_ms": round(sum(lat) / len(lat), 3) if lat else None,
            "errors": dict(self.errors),
            "window": [round(self.window[0], 6), round(self.window[1], 6)],
            "unfinished": self.unfinished,
            "oldest_unfinished_ms": round(self.oldest_unfinished_ms, 1),
        }


class _Conn:
    __slots__ = ("buf", "index", "need", "sent_at", "sock", "status")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.need = -1  # total bytes of the current response, once its header is parsed
        self.status = 0
        self.sent_at = 0.0
        self.index = 0


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _build_requests(host: str, port: int, path: str, bodies: Sequence[bytes]) -> list[bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
    )
    return [(head + f"Content-Length: {len(b)}\r\n\r\n").encode("ascii") + b for b in bodies]


def _parse_head(conn: _Conn) -> bool:
    """Parse the status line and Content-Length once the header is complete; False while incomplete."""
    end = conn.buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = bytes(conn.buf[:end]).decode("latin-1").split("\r\n")
    conn.status = int(head[0].split(" ", 2)[1])
    length = None
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length (the load generator needs it)")
    conn.need = end + 4 + length
    return True


class _Runner:
    """The event loop of one run: keeps one request in flight per connection."""

    def __init__(self, host: str, port: int, requests: list[bytes], check: Checker | None) -> None:
        self.host, self.port, self.requests, self.check = host, port, requests, check
        self.sel = selectors.DefaultSelector()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.counter = 0
        self.conns: list[_Conn] = []
        self.measure_from = self.end = 0.0

    def open(self, concurrency: int) -> None:
        for _ in range(concurrency):
            conn = _Conn(_connect(self.host, self.port))
            self.sel.register(conn.sock, selectors.EVENT_READ, conn)
            self.conns.append(conn)

    def close(self) -> None:
        for conn in self.conns:
            self.sel.unregister(conn.sock)
            conn.sock.close()
        self.sel.close()

    def send(self, conn: _Conn) -> None:
        conn.index = self.counter
        self.counter += 1
        conn.buf.clear()
        conn.need = -1
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(self.requests[conn.index % len(self.requests)])  # small: fits the socket buffer

    def fail(self, conn: _Conn, name: str) -> None:
        """Count an error (if measured), open a fresh connection, and go on."""
        if conn.sent_at >= self.measure_from:
            self.errors[name] += 1
        self.sel.unregister(conn.sock)
        conn.sock.close()
        conn.sock = _connect(self.host, self.port)
        self.sel.register(conn.sock, selectors.EVENT_READ, conn)
        self.send(conn)

    def receive(self, conn: _Conn) -> bool:
        """Read what arrived; True once the whole response is in."""
        chunk = conn.sock.recv(262144)
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        conn.buf += chunk
        if conn.need < 0 and not _parse_head(conn):
            return False
        return len(conn.buf) >= conn.need

    def record(self, conn: _Conn, done: float) -> None:
        if conn.sent_at < self.measure_from or done > self.end:
            return
        if not 200 <= conn.status < 300:
            self.errors[str(conn.status)] += 1
            return
        problem = self.check(conn.index, _body(conn)) if self.check is not None else None
        if problem is None:
            self.latencies.append((done - conn.sent_at) * 1000.0)
        else:
            self.errors[problem] += 1

    def loop(self, warmup_s: float, duration_s: float, request_timeout_s: float) -> None:
        start = time.perf_counter()
        self.measure_from = start + warmup_s
        self.end = self.measure_from + duration_s
        for conn in self.conns:
            self.send(conn)
        while (now := time.perf_counter()) < self.end:
            events = self.sel.select(timeout=min(0.5, self.end - now))
            if not events:
                for conn in self.conns:
                    if now - conn.sent_at > request_timeout_s:
                        self.fail(conn, "client_timeout")
                continue
            for key, _ in events:
                conn = key.data
                try:
                    complete = self.receive(conn)
                except (OSError, ValueError) as exc:
                    self.fail(conn, type(exc).__name__)
                    continue
                if complete:
                    self.record(conn, time.perf_counter())
                    self.send(conn)


def run_load(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 2.0,
    check: Checker | None = None,
    request_timeout_s: float = 30.0,
) -> LoadResult:
    """Drive ``url`` with ``concurrency`` closed-loop connections; ``bodies`` are sent round-robin.

    Request number ``i`` (counted over all connections, warm-up included) carries ``bodies[i % len]``; a
    2xx response is passed to ``check(i, body)`` when given, which names an error or returns ``None``.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    if host not in _LOOPBACK:
        raise ValueError(f"loopback only: {host!r} is not 127.0.0.1, localhost or ::1")
    runner = _Runner(host, port, _build_requests(host, port, parts.path or "/", bodies), check)
    wall_offset = time.time() - time.perf_counter()
    try:
        runner.open(concurrency)
        runner.loop(warmup_s, duration_s, request_timeout_s)
        # Every connection has one request in flight; one sent after the end has age 0.
        ages = [max(0.0, runner.end - conn.sent_at) for conn in runner.conns]
    finally:
        runner.close()
    window = (runner.measure_from + wall_offset, runner.end + wall_offset)
    return LoadResult(
        concurrency,
        duration_s,
        len(runner.latencies),
        dict(runner.errors),
        runner.latencies,
        window,
        unfinished=len(ages),
        oldest_unfinished_ms=1000.0 * max(ages, default=0.0),
    )


def _body(conn: _Conn) -> bytes:
    head_end = conn.buf.find(b"\r\n\r\n") + 4
    return bytes(conn.buf[head_end : conn.need])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/api/v1/predict (loopback only)")
    parser.add_argument("--body", action="append", default=[], help="JSON request body (repeatable)")
    parser.add_argument("--bodies-file", help="a file of request bodies, one JSON document per line")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("-w", "--warmup", type=float, default=2.0, help="unmeasured seconds first")
    args = parser.parse_args(argv)
    bodies = [b.encode() for b in args.body]
    if args.bodies_file:
        with open(args.bodies_file, "rb") as f:
            bodies += [line.rstrip(b"\n") for line in f if line.strip()]
    if not bodies:
        parser.error("give --body or --bodies-file")
    result = run_load(
        args.url,
        bodies,
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
    )
    json.dump(result.summary(), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
