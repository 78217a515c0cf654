"""Answers given before the body is read reach the client, and stalled clients are cut off, on every server.

Real servers on loopback (the development server, plain gunicorn, ``mest serve`` on gunicorn's three worker
classes and on granian) and real clients: ``urllib`` (sends ``Connection: close`` and the whole body before
reading), ``http.client`` (keep-alive, chunked uploads) and raw sockets for stalled bodies and headers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from support import mest_serve
from support.servers import RunningServer, dev_server, gunicorn

pytestmark = pytest.mark.server

LIMIT = 1024 * 1024  # basic_app's max_body_size
BIG = 10 * 1024 * 1024  # an early answer's body: more than socket buffers hold, within the drain bound
BODY_TIMEOUT = "1"  # seconds: short, so a stalled body is answered quickly
ENV = {"MEST_BODY_TIMEOUT": BODY_TIMEOUT}

SERVERS = ["dev", "gunicorn-sync", "gunicorn-gthread", "mest-gevent", "mest-gthread", "mest-sync", "mest-granian"]


@contextlib.contextmanager
def _serve(kind: str) -> Iterator[RunningServer]:
    if kind == "dev":
        with dev_server("basic_app.py", env=ENV) as server:
            yield server
    elif kind.startswith("gunicorn-"):
        with gunicorn("basic_app:app", worker_class=kind.split("-")[1], env=ENV) as server:
            yield server
    else:
        worker = kind.split("-")[1]
        flags = ["--server", "granian"] if worker == "granian" else ["-k", worker]
        argv = mest_serve.mest_argv("basic_app:app", "-w", "1", "--body-timeout", BODY_TIMEOUT, *flags)
        with mest_serve.running(argv) as server:
            server.kind = kind
            yield server


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with _serve(request.param) as running:
        running.kind = request.param
        yield running


def _address(server: RunningServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _assert_error(status: int, body: bytes, expected: int) -> None:
    assert status == expected, body[:300]
    payload = json.loads(body)
    assert payload["status"] == expected
    assert payload["request_id"]


def test_urllib_gets_the_413_for_a_body_over_the_limit(server: RunningServer) -> None:
    """urllib sends ``Connection: close`` and the whole body before it reads: the answer must still arrive."""
    # Well past what loopback's socket buffers absorb, so the server must read it for the answer to arrive.
    body = b"[" + b"1," * (BIG // 2) + b"1]"
    request = urllib.request.Request(
        server.url + "/sum", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    _assert_error(caught.value.code, caught.value.read(), 413)


@pytest.mark.parametrize(
    ("method", "path", "content_type", "status"),
    [
        ("POST", "/no/such/route", "application/json", 404),
        ("PUT", "/sum", "application/json", 405),
        ("POST", "/sum", "text/plain", 415),
        ("POST", "/sum", "application/json", 413),
    ],
)
def test_early_answers_arrive_on_a_keep_alive_connection(
    server: RunningServer, method: str, path: str, content_type: str, status: int
) -> None:
    """Each early answer arrives after the whole body was sent; the connection then either says it closes, or
    carries the next request correctly (the unread body was discarded, not taken for the next request)."""
    size = BIG
    conn = http.client.HTTPConnection(*_address(server), timeout=60)
    try:
        conn.request(method, path, body=b"x" * size, headers={"Content-Type": content_type})
        response = conn.getresponse()
        _assert_error(response.status, response.read(), status)
        if (response.getheader("Connection") or "").lower() == "close" or response.will_close:
            return
        conn.request("GET", "/health/live")
        follow_up = conn.getresponse()
        assert follow_up.status == 200
        assert json.loads(follow_up.read()) == {"status": "alive"}
    finally:
        conn.close()


def test_a_chunked_body_growing_past_the_limit_gets_413(server: RunningServer) -> None:
    chunk = b"1," * 32 * 1024

    def chunks() -> Iterator[bytes]:
        for _ in range((LIMIT + 256 * 1024) // len(chunk)):
            yield chunk

    conn = http.client.HTTPConnection(*_address(server), timeout=60)
    try:
        conn.request("POST", "/sum", body=chunks(), headers={"Content-Type": "application/json"},
                     encode_chunked=True)
        response = conn.getresponse()
        _assert_error(response.status, response.read(), 413)
    finally:
        conn.close()


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


# granian reads bodies in Rust without an idle timeout Mest can set (docs/cli.md): not among these.
@pytest.mark.parametrize("kind", [kind for kind in SERVERS if kind != "mest-granian"])
def test_a_stalled_body_gets_408_and_the_connection_closes(kind: str) -> None:
    with _serve(kind) as server, socket.create_connection(_address(server), timeout=60) as sock:
        sock.sendall(
            b"POST /sum HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"features\": ["
        )
        answer = _read_until_closed(sock)  # the server must answer and close by itself: no more bytes come
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 408 " in head.split(b"\r\n")[0], answer[:300]
    assert b"connection: close" in head.lower()
    _assert_error(408, body, 408)


# gunicorn has no request-head timeout (docs/production.md): only these two bound it.
@pytest.mark.parametrize("kind", ["dev", "mest-granian"])
def test_stalled_headers_are_dropped(kind: str) -> None:
    """The development server and granian bound the time to send the request head (``--body-timeout``)."""
    with _serve(kind) as server, socket.create_connection(_address(server), timeout=60) as sock:
        sock.sendall(b"POST /sum HTTP/1.1\r\nHost: test\r\n")
        answer = _read_until_closed(sock)  # returns once the server closes: within the timeout, not 60 s
    assert b" 200 " not in answer


@pytest.mark.parametrize("kind", ["mest-gevent", "mest-gthread"])
def test_slow_clients_never_starve_mest_serve(kind: str) -> None:
    """More slow connections than the worker has threads (half stuck in their head, half in their body), and a
    normal client still gets every answer: gevent's greenlets wait for them, and mest serve's gthread worker
    reads heads in its event loop (server/_gthread.py) so no thread waits for a slow client."""
    slow: list[socket.socket] = []
    with _serve(kind) as server:
        try:
            for i in range(24):  # six times the 4 threads of mest serve's gthread worker
                sock = socket.create_connection(_address(server), timeout=30)
                slow.append(sock)
                if i % 2:
                    sock.sendall(b"POST /sum HTTP/1.1\r\nHost: test\r\nContent-")  # a head that never ends
                else:
                    sock.sendall(
                        b"POST /sum HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{\"feat"  # a body that never ends
                    )
            for i in range(20):
                request = urllib.request.Request(
                    server.url + "/sum", data=b'{"features": [1, 2]}',
                    headers={"Content-Type": "application/json"}, method="POST",
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == 200 and json.loads(response.read())["sum"] == 3.0, i
        finally:
            for sock in slow:
                sock.close()
