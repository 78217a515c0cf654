"""``mest serve --server granian``: what Mest sets of granian's HTTP/1 (``mest.server.granian``), checked on a
real granian on loopback. granian has one client timer (``header_read_timeout``) that runs from the end of a
response until the next request head is in; Mest sets it to the shorter of ``--keepalive`` and
``--body-timeout``, so ``--keepalive`` closes idle connections as it does on gunicorn (docs/cli.md)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from mest.server.options import ServeOptions
from support import mest_serve

pytest.importorskip("granian")
pytestmark = pytest.mark.server

from mest.server.granian import granian_settings  # noqa: E402  (needs the granian extra)

REQUEST = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"


def _settings(**overrides: object) -> object:
    return granian_settings(ServeOptions(app="basic_app:app", **overrides), 8000)["http1_settings"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "keep_alive", "timeout_ms"),
    [
        ({}, True, 5000),  # --keepalive's default, shorter than granian's 30 s
        ({"keepalive": 2}, True, 2000),
        ({"keepalive": 60, "body_timeout": 10.0}, True, 10000),
        ({"keepalive": 0, "body_timeout": 7.5}, False, 7500),
        ({"keepalive": 0}, False, 30000),  # nothing set: granian's own
        ({"keepalive": 3, "body_timeout": 0.0}, True, 3000),
    ],
)
def test_keepalive_and_body_timeout_set_granians_one_client_timeout(
    overrides: dict[str, object], keep_alive: bool, timeout_ms: int
) -> None:
    settings = _settings(**overrides)
    assert settings.keep_alive is keep_alive  # type: ignore[attr-defined]
    assert settings.header_read_timeout == timeout_ms  # type: ignore[attr-defined]


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_seconds() -> None:
    argv = mest_serve.mest_argv("basic_app:app", "--server", "granian", "-w", "1", "--keepalive", "1")
    with mest_serve.running(argv) as server:
        parts = urlsplit(server.url)
        assert parts.hostname is not None and parts.port is not None
        # granian's default would hold it 30 s: the 25 s socket timeout only catches a --keepalive ignored
        with socket.create_connection((parts.hostname, parts.port), timeout=25) as sock:
            sock.sendall(REQUEST)
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
            sock.sendall(REQUEST)  # still open for a second request right away
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
            assert sock.recv(65536) == b"", "the idle connection should be closed by the server"
