"""HEAD on every GET route answers as GET without a body (RFC 9110 §9.3.2), on every server Mest runs on.

Checked over one keep-alive connection with the standard library's client: a server that sent a body after a
HEAD answer would corrupt the next answer on the connection.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from support.mest_serve import serve_on
from support.servers import RunningServer

pytestmark = pytest.mark.server

PATHS = ["/health/live", "/health/ready", "/v2/health/live", "/v2", "/metrics", "/openapi.json", "/docs"]


@pytest.fixture(scope="module", params=["dev", "sync", "gthread", "gevent", "mest-gevent", "mest-granian"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    if request.param == "mest-granian":
        pytest.importorskip("granian")
    with serve_on(request.param, "core_app") as server:
        yield server


def _connection(server: RunningServer) -> http.client.HTTPConnection:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=30)


@pytest.mark.parametrize("path", PATHS)
def test_head_answers_as_get_without_a_body(server: RunningServer, path: str) -> None:
    connection = _connection(server)
    try:
        connection.request("GET", path)
        get = connection.getresponse()
        get_body = get.read()
        connection.request("HEAD", path)
        head = connection.getresponse()
        assert head.read() == b""
        assert head.status == get.status
        assert head.getheader("Content-Type") == get.getheader("Content-Type")
        length = int(head.getheader("Content-Length", "-1"))
        if path == "/metrics":  # counts the requests themselves: a little longer each time
            assert length >= len(get_body) > 0
        else:
            assert length == len(get_body)
        assert head.getheader("X-Request-ID")
        connection.request("GET", "/health/live")  # the same connection is still in step
        after = connection.getresponse()
        assert after.status == 200 and after.read() == b'{"status":"alive"}'
    finally:
        connection.close()


def test_head_on_unknown_and_post_only_routes_has_no_body(server: RunningServer) -> None:
    connection = _connection(server)
    try:
        for path, status in (("/nope", 404), ("/sum", 405)):
            connection.request("HEAD", path)
            response = connection.getresponse()
            assert response.status == status and response.read() == b""
        connection.request("GET", "/health/live")
        assert connection.getresponse().read() == b'{"status":"alive"}'
    finally:
        connection.close()
