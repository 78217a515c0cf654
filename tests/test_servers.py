"""End to end: real HTTP to real servers on loopback (the dev server behind ``app.run()``, and gunicorn's sync,
gthread and gevent workers) serving ``tests/apps/core_app.py``.

Every test here must hold whichever server runs the app: the adapters' in-process behaviour is covered by
test_endpoints.py; this file proves it survives real sockets, real workers and real concurrency.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support.servers import RunningServer, dev_server, gunicorn, stop

pytestmark = pytest.mark.server

SERVERS = ["dev", "sync", "gthread", "gevent"]
SECRET = "/secret/weights/model.bin"  # core_app puts it in internal errors; clients must never see it
LIMIT = 64 * 1024  # core_app's default MAX_BODY_SIZE
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
HEADERS_END = b"\r\n\r\n"


@contextlib.contextmanager
def serve(kind: str, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    if kind == "dev":
        with dev_server("core_app.py", env=env) as server:
            yield server
    else:
        # Two sync workers: several processes serve, each must have run setup exactly once.
        workers = 2 if kind == "sync" else 1
        with gunicorn("core_app:app", worker_class=kind, workers=workers, env=env) as server:
            yield server


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with serve(request.param) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    for leak in ("Traceback", SECRET, 'File "', "exploded"):
        assert leak not in response.text
    return body


def raw_exchange(server: RunningServer, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes; return what arrives until the response headers end (or the server closes)."""
    port = int(server.url.rsplit(":", 1)[1])
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        while HEADERS_END not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


# -- success --------------------------------------------------------------------------------------------


def test_success(client: httpx.Client) -> None:
    response = client.post("/sum", json={"id": "a", "features": [1, 2, 3.5]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == "a"
    assert body["sum"] == 6.5
    assert GENERATED_ID.match(response.headers["x-request-id"])


def test_response_with_custom_status_and_headers(client: httpx.Client) -> None:
    text = client.post("/sum", json={"id": "custom", "features": [1]})
    assert text.status_code == 201
    assert text.headers["content-type"] == "text/plain"
    assert text.headers["x-custom"] == "1"
    assert text.content == b"plain text"
    raw = client.post("/sum", json={"id": "bytes", "features": [1]})
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/x-raw"
    assert raw.content == b"\x00\x01raw"


def test_text_predictor_receives_raw_bytes(client: httpx.Client) -> None:
    response = client.post("/text", content="héllo {".encode(), headers={"Content-Type": "text/plain; charset=utf-8"})
    assert response.status_code == 200
    assert response.json() == {"type": "bytes", "upper": "HÉLLO {"}
    assert_error(client.post("/text", json={"a": 1}), 415, "unsupported_media_type")


def test_health(client: httpx.Client) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": {"sum": "ready", "text": "ready", "lifecycle": "ready"}}


def test_setup_ran_once_in_every_serving_process(client: httpx.Client) -> None:
    answers = [client.post("/lifecycle", json={}).json() for _ in range(12)]
    assert {a["setup_calls"] for a in answers} == {1}


def test_chunked_body_within_limit(server: RunningServer, client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"features": '
        yield b"[1, 2, 3]}"

    response = client.post("/sum", content=body(), headers={"Content-Type": "application/json"}, timeout=3.0)
    assert response.status_code == 200
    assert response.json()["sum"] == 6.0


# -- client errors --------------------------------------------------------------------------------------


def test_malformed_json(client: httpx.Client) -> None:
    body = assert_error(
        client.post("/sum", content=b'{"features": [1,', headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )
    assert str(body["error"]).startswith("Malformed JSON")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"id": "x"}, "missing key 'features'"),  # KeyError
        ({"features": 5}, "Invalid input"),  # TypeError
        ({"features": ["a"]}, "Invalid input"),  # ValueError
    ],
    ids=["KeyError", "TypeError", "ValueError"],
)
def test_pre_process_input_errors(client: httpx.Client, payload: object, fragment: str) -> None:
    body = assert_error(client.post("/sum", json=payload), 400, "bad_request")
    assert fragment in str(body["error"])


def test_mest_errors_from_predictor_code(client: httpx.Client) -> None:
    rejected = assert_error(client.post("/sum", json={"id": "reject", "features": [1]}), 400, "bad_request")
    assert rejected["error"] == "rejected by post_process"
    invalid = assert_error(
        client.post("/sum", json={"id": "unprocessable", "features": [1]}), 422, "unprocessable_entity"
    )
    assert invalid["error"] == "features must be finite"


def test_unsupported_content_type(client: httpx.Client) -> None:
    assert_error(
        client.post("/sum", content=b"features=1", headers={"Content-Type": "application/x-www-form-urlencoded"}),
        415,
        "unsupported_media_type",
    )


def test_body_over_limit(client: httpx.Client) -> None:
    big = b'{"features": [' + b"1," * (LIMIT // 2) + b"1]}"
    assert_error(
        client.post("/sum", content=big, headers={"Content-Type": "application/json"}), 413, "payload_too_large"
    )


def test_chunked_body_over_limit(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"features": ['
        for _ in range(LIMIT // 4096 + 2):
            yield b"1," * 2048

    response = client.post("/sum", content=body(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_413_is_answered_without_reading_the_body(server: RunningServer) -> None:
    # 200 MB announced, 3 bytes sent: a 413 can only arrive if the server does not wait for the body.
    received = raw_exchange(
        server,
        b'POST /sum HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{"f',
    )
    assert re.match(rb"HTTP/1\.[01] 413 ", received), received


def test_wrong_method(client: httpx.Client) -> None:
    response = client.get("/sum")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    assert client.delete("/health/live").headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/nope", "/sum/extra", "/"])
def test_unknown_route(client: httpx.Client, path: str) -> None:
    assert_error(client.post(path, json={}), 404, "not_found")


# -- server errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "payload", "code", "error_type"),
    [
        ("infer", {"features": [666]}, "inference_error", "RuntimeError"),
        ("post_process", {"id": "post-crash", "features": [1]}, "inference_error", "ZeroDivisionError"),
    ],
    ids=["infer", "post_process"],
)
def test_500_hides_internals_and_is_logged_with_request_id(
    server: RunningServer, client: httpx.Client, stage: str, payload: object, code: str, error_type: str
) -> None:
    request_id = f"e2e-500-{stage}"
    response = client.post("/sum", json=payload, headers={"X-Request-ID": request_id})
    assert assert_error(response, 500, code)["request_id"] == request_id
    # The server log has the traceback, right after the line naming the request id.
    server.wait_for_output(rf"{re.escape(request_id)}[^\n]*\nTraceback \(most recent call last\)", timeout=10.0)
    server.wait_for_output(rf"{error_type}: ")


def test_workers_keep_serving_after_errors(server: RunningServer, client: httpx.Client) -> None:
    for _ in range(3):
        assert client.post("/sum", json={"features": [666]}).status_code == 500
        assert client.post("/sum", json={"id": "after", "features": [2]}).json()["sum"] == 2.0
    assert server.process.poll() is None


@pytest.mark.parametrize("kind", SERVERS)
def test_a_flood_of_one_fault_logs_one_traceback_per_process(kind: str) -> None:
    with serve(kind) as server, server.client() as http:
        for i in range(30):
            response = http.post("/sum", json={"features": [666]}, headers={"X-Request-ID": f"flood-{i}"})
            assert response.status_code == 500
        assert http.post("/sum", json={"features": [2]}).json()["sum"] == 2.0
        server.wait_for_output(r"RuntimeError: the model exploded")
        server.wait_for_output(r"POST /sum 200 ")  # every access line up to the last request has been written
        tracebacks = server.output.count("RuntimeError: the model exploded")
        workers = 2 if kind == "sync" else 1
        assert 1 <= tracebacks <= workers, server.output[-4000:]


# -- request ids ----------------------------------------------------------------------------------------


def test_sane_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.post("/sum", json={"features": [1]}, headers={"X-Request-ID": "client-id-1"})
    assert response.headers["x-request-id"] == "client-id-1"
    error = client.post("/sum", json={}, headers={"X-Request-ID": "client-id-2"})
    assert error.headers["x-request-id"] == "client-id-2"
    assert error.json()["request_id"] == "client-id-2"


@pytest.mark.parametrize("request_id", ["x" * 500, "has space", "semi;colon"], ids=["long", "space", "semicolon"])
def test_insane_request_id_is_replaced(client: httpx.Client, request_id: str) -> None:
    response = client.post("/sum", json={"features": [1]}, headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert GENERATED_ID.match(response.headers["x-request-id"])


# -- concurrency ----------------------------------------------------------------------------------------




def test_concurrent_requests_each_get_their_own_answer(server: RunningServer) -> None:
    def one_client(n: int) -> list[tuple[str, str, str, float, float]]:
        results = []
        with server.client() as http:
            for k in range(3):
                rid = f"c{n}-r{k}"
                features = [n, k, 0.5]
                response = http.post("/sum", json={"id": rid, "features": features}, headers={"X-Request-ID": rid})
                assert response.status_code == 200, response.text
                body = response.json()
                results.append((rid, response.headers["x-request-id"], body["id"], body["sum"], sum(features)))
        return results

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = [r for batch in pool.map(one_client, range(32)) for r in batch]
    assert len(outcomes) == 96
    for rid, header_id, body_id, got, expected in outcomes:
        assert header_id == rid
        assert body_id == rid
        assert got == expected


# -- lifecycle ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SERVERS)
def test_setup_failure_makes_route_and_ready_503_while_live_200(kind: str) -> None:
    with serve(kind, env={"WITH_BROKEN_SETUP": "1"}) as server, server.client() as http:
        assert http.get("/health/live").status_code == 200
        ready = assert_error(http.get("/health/ready"), 503, "unavailable")
        assert ready["detail"]["models"]["sum"] == "ready"  # type: ignore[index]
        assert ready["detail"]["models"]["broken"] != "ready"  # type: ignore[index]
        assert_error(http.post("/broken", json={}), 503, "unavailable")
        assert http.post("/sum", json={"features": [1]}).status_code == 200  # the others still serve
        assert "FileNotFoundError" in server.wait_for_output("FileNotFoundError").group(0)


def test_dev_server_prints_url_and_routes_and_stops_on_sigint() -> None:
    with dev_server("core_app.py") as server:
        printed = server.output
        assert f"Mest development server on {server.url}" in printed
        for method, path in [("GET", "/health/live"), ("GET", "/health/ready"), ("POST", "/sum"), ("POST", "/text")]:
            assert re.search(rf"^\s+{method}\s+{re.escape(path)}$", printed, re.M), printed
        with server.client() as http:
            assert http.post("/sum", json={"features": [1]}).status_code == 200
        assert stop(server, signal.SIGINT) == 0
        server.wait_for_output("stopped")


def test_dev_server_holds_a_burst_of_pending_connections() -> None:
    """While every thread is busy (here: the process is stopped), the kernel must queue new clients."""
    request = b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n"
    request += b'{"features": [1]}'
    with dev_server("core_app.py") as server:
        port = int(server.url.rsplit(":", 1)[1])
        sockets: list[socket.socket] = []
        os.kill(server.pid, signal.SIGSTOP)
        try:
            with contextlib.ExitStack() as stack:
                try:
                    for _ in range(64):
                        # Completes at once while the accept queue has room; times out when it is full.
                        sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
                        sockets.append(stack.enter_context(sock))
                finally:
                    os.kill(server.pid, signal.SIGCONT)
                for sock in sockets:
                    sock.settimeout(10.0)
                    sock.sendall(request)
                    assert sock.recv(65536).startswith(b"HTTP/1.0 200 ")
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert len(sockets) == 64


def test_dev_server_logs_one_access_line_per_request_and_escapes_what_clients_send() -> None:
    with dev_server("core_app.py") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
            sock.sendall(b"GET / HTTP/1.1\x1b[31mred\x00\r\nHost: t\r\n\r\n")  # a malformed request line
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 400 Bad Request\r\n") and b"Connection: close" in head
        error = json.loads(body)
        assert error["status"] == 400 and error["code"] == "bad_request" and error["request_id"]
        assert "\x1b" not in error["error"]
        with server.client() as http:
            response = http.post("/sum", json={"features": [1]}, headers={"X-Request-ID": "one-line-only"})
        assert response.status_code == 200
        server.wait_for_output(r"one-line-only")
        server.wait_for_output(r"mest\.devserver")
        assert "\x1b" not in server.output and "\x00" not in server.output
        assert "[31mred" in server.output  # the line is there, with the ESC replaced
        lines = [line for line in server.output.splitlines() if "POST /sum" in line]
        assert len(lines) == 1 and "one-line-only" in lines[0], lines


def test_dev_server_stops_cleanly_on_sigterm() -> None:
    with dev_server("core_app.py") as server:
        assert stop(server, signal.SIGTERM) == 0
        server.wait_for_output("stopped", timeout=2.0)


@pytest.mark.parametrize("kind", ["sync", "gevent"])
def test_gunicorn_stops_cleanly_on_sigterm(kind: str) -> None:
    with serve(kind) as server:
        with server.client() as http:
            assert http.post("/sum", json={"features": [1]}).status_code == 200
        assert stop(server, signal.SIGTERM) == 0
