"""Streaming on real servers (``app.run()``, gunicorn gthread, ``mest serve`` on gunicorn gevent and on
granian) serving ``tests/apps/stream_app.py``: items arrive one by one, a client that leaves closes the
generator (its ``finally`` runs), an error after the first item ends the stream with an error event and a
log line, and the model keeps answering other requests while streams run.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.mest_serve import serve_on, wait_for
from support.servers import RunningServer

pytestmark = pytest.mark.server

SERVERS = ["dev", "gthread", "mest-gevent", "mest-granian"]


def serve(kind: str, marks: Path) -> contextlib.AbstractContextManager[RunningServer]:
    return serve_on(kind, "stream_app", env={"STREAM_MARKS": str(marks)})


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    marks = tmp_path_factory.mktemp(f"marks-{request.param}")
    with serve(request.param, marks) as running_server:
        running_server.marks = marks  # type: ignore[attr-defined]
        yield running_server


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of an SSE stream, parsed line by line as they arrive."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


def test_items_arrive_as_server_sent_events_with_streaming_headers(server: RunningServer) -> None:
    with server.client() as client, client.stream("POST", "/count", json={"n": 5, "delay_ms": 1}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-accel-buffering"] == "no"
        assert resp.headers["cache-control"] == "no-cache"
        assert "content-length" not in resp.headers and "content-encoding" not in resp.headers
        assert resp.headers["x-request-id"]
        events = list(sse_events(resp.iter_lines()))
    assert events == [("message", json.dumps({"i": i, "of": 5}, separators=(",", ":"))) for i in range(5)]


def test_accept_ndjson_gets_one_json_document_per_line(server: RunningServer) -> None:
    with server.client() as client:
        resp = client.post("/count", json={"n": 3}, headers={"Accept": "application/x-ndjson"})
        fixed = client.post("/lines", json={"words": ["a", "b c"]})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in resp.text.splitlines()] == [{"i": i, "of": 3} for i in range(3)]
    assert fixed.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in fixed.text.splitlines()] == ["a", "b c"]


def test_an_error_after_the_first_item_ends_the_stream_with_an_error_event(server: RunningServer) -> None:
    with server.client() as client, client.stream("POST", "/fail", json={"after": 2}) as resp:
        assert resp.status_code == 200
        request_id = resp.headers["x-request-id"]
        events = list(sse_events(resp.iter_lines()))
    assert events[:2] == [("message", "0"), ("message", "1")]
    kind, data = events[2]
    error = json.loads(data)
    assert kind == "error" and len(events) == 3
    assert error == {"error": "The stream failed.", "code": "inference_error", "status": 500, "request_id": request_id}
    assert "secret" not in json.dumps(events)
    server.wait_for_output(rf"ended after 2 items: The stream failed\. \[request_id={request_id}\]", timeout=30)


def test_an_error_before_the_first_item_is_an_ordinary_error_response(server: RunningServer) -> None:
    with server.client() as client:
        resp = client.post("/fail", json={"after": 0})
        bad = client.post("/count", json={"delay_ms": 1})
    assert resp.status_code == 500 and resp.json()["code"] == "inference_error"
    assert resp.json()["request_id"] == resp.headers["x-request-id"]
    assert bad.status_code == 400 and "missing key 'n'" in bad.json()["error"]


def test_a_client_that_leaves_closes_the_generator_and_others_are_still_served(server: RunningServer) -> None:
    marks: Path = server.marks  # type: ignore[attr-defined]
    request_id = f"leaver-{server.kind or 'mest'}-{id(server)}"
    body = json.dumps({"n": 100000, "delay_ms": 20}).encode()
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(
            b"POST /count HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        received = b""
        while b"data: " not in received.partition(b"\r\n\r\n")[2]:  # the first event, long before the last
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {received!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200") or received.startswith(b"HTTP/1.0 200")
        # While this stream runs, the same model queue answers other requests.
        with server.client() as client:
            assert client.post("/plain", json={}).json() == {"ok": True}
    finally:
        # An abortive close (RST): the server's next write fails at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    mark = marks / request_id
    wait_for(mark.exists, 60, "the generator's finally to run after the client left", server)
    rid, sent = mark.read_text().split()
    assert rid == request_id and int(sent) < 100000

    def counted() -> bool:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        return 'mest_streams_total{model="count",outcome="client_closed",version=""}' in text

    wait_for(counted, 30, "mest_streams_total{outcome=client_closed}", server)
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'mest_stream_items_total{model="count",version=""}' in metrics
    assert 'mest_stream_time_to_first_item_seconds_count{model="count",version=""}' in metrics


def test_triton_generate_stream_sends_one_event_per_item(server: RunningServer) -> None:
    with server.client() as client:
        with client.stream("POST", "/v2/models/count/generate_stream", json={"n": 3}) as resp:
            assert resp.status_code == 200 and resp.headers["x-accel-buffering"] == "no"
            events = [json.loads(data) for _, data in sse_events(resp.iter_lines())]
        whole = client.post("/v2/models/lines/generate", json={"words": ["to", "gether"]})
    assert events == [{"i": i, "of": 3, "model_name": "count", "model_version": ""} for i in range(3)]
    assert whole.json() == {"text_output": "together", "model_name": "lines", "model_version": ""}
