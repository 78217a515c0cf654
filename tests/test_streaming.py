"""Streaming in process, on every adapter: the contract (a generator from ``post_process``), formats, the
time limit, closing, errors, metrics, registration checks and Triton's generate extension.
Real servers and real disconnects: test_streaming_servers.py."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mest import Mest
from mest.api import StreamingResponse
from mest.codecs import sse
from mest.predictors import PredictorBase
from mest.testing import TestClient


class Counter(PredictorBase):
    """Streams ``{"i": i}`` for i < n (``delay_ms`` apart); records whether its generator's finally ran."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[int] = []

    def infer(self, processed_data: Any) -> Any:
        return processed_data

    def post_process(self, prediction: Any, req: Any) -> Iterator[Any]:
        n, delay = int(prediction["n"]), float(prediction.get("delay_ms", 0)) / 1000

        def events() -> Iterator[Any]:
            sent = 0
            try:
                for i in range(n):
                    if i and delay:
                        time.sleep(delay)
                    yield {"i": i}
                    sent += 1
            finally:
                self.finished.append(sent)

        return events()


class Words(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        return processed_data["text"].split()

    def post_process(self, words: list[str], req: Any) -> Iterator[str]:
        return iter(words)


def environ(path: str, body: dict[str, Any], accept: str | None = None) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    env = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "t", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(raw),
        "wsgi.errors": io.StringIO(), "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(raw)),
    }
    if accept:
        env["HTTP_ACCEPT"] = accept
    return env


def test_a_generator_is_sent_as_server_sent_events(make_app: Callable[..., Mest]) -> None:
    app = make_app()
    app.add_inference_handler(Counter(), "/count")
    app.add_inference_handler(Words(), "/words")
    resp = TestClient(app).post("/count", json={"n": 3})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["x-accel-buffering"] == "no" and "content-length" not in resp.headers
    assert resp.content == b'data: {"i":0}\n\ndata: {"i":1}\n\ndata: {"i":2}\n\n'
    words = TestClient(app).post("/words", json={"text": "hello big\nworld"})
    assert words.content == b"data: hello\n\ndata: big\n\ndata: world\n\n"  # str items: the event's text as is


def test_accept_chooses_ndjson_unless_the_predictor_chose(make_app: Callable[..., Mest]) -> None:
    class Fixed(Counter):
        stream_format = "sse"

    app = make_app()
    app.add_inference_handler(Counter(), "/count")
    app.add_inference_handler(Fixed(), "/fixed")
    client = TestClient(app)
    resp = client.post("/count", json={"n": 2}, headers={"Accept": "application/x-ndjson"})
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert resp.content == b'{"i":0}\n{"i":1}\n'
    both = client.post("/count", json={"n": 1}, headers={"Accept": "text/event-stream, application/x-ndjson"})
    assert both.headers["content-type"].startswith("text/event-stream")
    fixed = client.post("/fixed", json={"n": 1}, headers={"Accept": "application/x-ndjson"})
    assert fixed.headers["content-type"].startswith("text/event-stream")


def test_the_body_reaches_the_server_unjoined_and_close_ends_the_generator(make_app: Callable[..., Mest]) -> None:
    app = make_app()
    counter = Counter()
    app.add_inference_handler(counter, "/count")
    started: list[Any] = []
    body = app(environ("/count", {"n": 1000}), lambda status, headers, exc_info=None: started.append(status))
    assert started == ["200 OK"]
    pieces = iter(body)
    assert next(pieces) == b'data: {"i":0}\n\n'
    assert next(pieces) == b'data: {"i":1}\n\n'
    assert counter.finished == []
    body.close()  # what a WSGI server does when the client has gone
    assert counter.finished == [1]  # the second item was pulled, not yet counted as sent by the generator


def test_a_stream_is_cut_at_its_time_limit_with_an_error_event(make_app: Callable[..., Mest]) -> None:
    app = make_app(stream_time_limit_s=0.2)
    counter = Counter()
    app.add_inference_handler(counter, "/count")
    resp = TestClient(app).post("/count", json={"n": 100000, "delay_ms": 20})
    events = resp.content.decode().strip().split("\n\n")
    assert events[-1].startswith("event: error\ndata: ")
    error = json.loads(events[-1].split("data: ", 1)[1])
    assert error["code"] == "timeout" and error["request_id"] == resp.headers["x-request-id"]
    sent = len(events) - 1
    # The generator's finally ran, suspended after yielding its last item (whose resumption it never saw).
    assert 1 <= sent < 100000 and counter.finished == [sent - 1]


def test_an_error_mid_stream_is_an_error_event_and_a_log_line(
    make_app: Callable[..., Mest], caplog: pytest.LogCaptureFixture
) -> None:
    class Breaks(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return processed_data

        def post_process(self, prediction: Any, req: Any) -> Iterator[Any]:
            yield 1
            yield {"not json": object()}  # unserializable: the stream fails here

    app = make_app()
    app.add_inference_handler(Breaks(), "/breaks")
    resp = TestClient(app).post("/breaks", json={}, headers={"Accept": "application/x-ndjson"})
    lines = [json.loads(line) for line in resp.content.splitlines()]
    assert lines[0] == 1 and lines[1]["code"] == "inference_error" and len(lines) == 2
    rid = resp.headers["x-request-id"]
    assert any(rid in r.getMessage() and "ended after 1 items" in r.getMessage() for r in caplog.records)


def test_an_empty_stream_and_an_error_before_the_first_item(make_app: Callable[..., Mest]) -> None:
    class Early(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return processed_data

        def post_process(self, prediction: Any, req: Any) -> Iterator[Any]:
            raise ValueError("no")
            yield  # a generator

    app = make_app()
    app.add_inference_handler(Counter(), "/count")
    app.add_inference_handler(Early(), "/early")
    client = TestClient(app)
    empty = client.post("/count", json={"n": 0})
    assert empty.status_code == 200 and empty.content == b""
    early = client.post("/early", json={})
    assert early.status_code == 500 and early.json()["code"] == "inference_error"


def test_stream_metrics(make_app: Callable[..., Mest]) -> None:
    app = make_app()
    app.add_inference_handler(Counter(), "/count")
    client = TestClient(app)
    client.post("/count", json={"n": 4})
    body = app(environ("/count", {"n": 100}), lambda *a: None)
    next(iter(body))
    body.close()
    metrics = client.get("/metrics").text
    assert 'mest_stream_items_total{model="count",version=""} 5.0' in metrics
    assert 'mest_streams_total{model="count",outcome="completed",version=""} 1.0' in metrics
    assert 'mest_streams_total{model="count",outcome="client_closed",version=""} 1.0' in metrics
    assert 'mest_stream_time_to_first_item_seconds_count{model="count",version=""} 2.0' in metrics


def test_registration_checks_the_stream_and_openai_declarations(make_app: Callable[..., Mest]) -> None:
    class BadFormat(Counter):
        stream_format = "xml"

    class BadApi(Counter):
        openai_api = ("chat", "images")

    app = make_app()
    with pytest.raises(ValueError, match="stream_format must be 'sse', 'ndjson' or None"):
        app.add_inference_handler(BadFormat(), "/a")
    with pytest.raises(ValueError, match=r"unknown API\(s\) \['images'\]"):
        app.add_inference_handler(BadApi(), "/b")
    assert ("POST", "/a") not in app.routes() and ("POST", "/b") not in app.routes()
    with pytest.raises(ValueError, match="stream_time_limit_s must be > 0"):
        make_app(stream_time_limit_s=0)


def test_triton_generate_and_generate_stream(make_app: Callable[..., Mest]) -> None:
    class Tokens(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return processed_data["text_input"].split()

        def post_process(self, words: list[str], req: Any) -> Iterator[Any]:
            return (w + " " for w in words)

    class Plain(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return {"text_output": processed_data["text_input"].upper()}

    app = make_app()
    app.add_inference_handler(Tokens(), "/tokens", name="tokens", version="2")
    app.add_inference_handler(Plain(), "/plain", name="plain")
    client = TestClient(app)
    whole = client.post("/v2/models/tokens/generate", json={"text_input": "a b", "parameters": {}})
    assert whole.json() == {"text_output": "a b ", "model_name": "tokens", "model_version": "2"}
    stream = client.post("/v2/models/tokens/versions/2/generate_stream", json={"text_input": "a b"})
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(e[len("data: "):]) for e in stream.content.decode().strip().split("\n\n")]
    assert [e["text_output"] for e in events] == ["a ", "b "]
    one = client.post("/v2/models/plain/generate_stream", json={"text_input": "x"})
    assert one.content == b'data: {"text_output":"X","model_name":"plain","model_version":""}\n\n'
    assert client.post("/v2/models/plain/generate", json=["x"]).status_code == 400
    assert client.post("/v2/models/nope/generate", json={}).status_code == 404


def test_streaming_response_is_public_and_passed_through() -> None:
    from mest.codecs.body import encode_body

    pieces = iter([b"a"])
    response = StreamingResponse(pieces, headers={"Content-Type": sse.SSE_CONTENT_TYPE})
    encode_body(response)
    assert response.body is pieces and list(response.body) == [b"a"]


def test_openapi_documents_streams_generate_and_openai_routes(make_app: Callable[..., Mest]) -> None:
    from openapi_spec_validator import validate

    class Chat(PredictorBase):
        openai_api = ("chat", "embeddings")

        def infer(self, processed_data: Any) -> Any:
            return processed_data

        def post_process(self, prediction: Any, req: Any) -> Iterator[str]:
            yield "hi"

    app = make_app()
    app.add_inference_handler(Chat(), "/chat", name="chat")
    spec = TestClient(app).get("/openapi.json").json()
    validate(spec)
    paths = spec["paths"]
    assert set(paths["/chat"]["post"]["responses"]["200"]["content"]) >= {"text/event-stream", "application/x-ndjson"}
    assert "text/event-stream" in paths["/v2/models/chat/generate_stream"]["post"]["responses"]["200"]["content"]
    assert paths["/v1/chat/completions"]["post"]["tags"] == ["openai"]
    assert "text/event-stream" in paths["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert {"/v1/models", "/v1/embeddings"} <= set(paths) and "/v1/completions" not in paths


def test_the_streaming_example_counts_and_refuses_bad_input() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "streaming" / "app.py"
    spec = importlib.util.spec_from_file_location("streaming_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    client = TestClient(example.app)
    resp = client.post("/count", json={"n": 3, "delay_ms": 1})
    assert resp.content == b'data: {"i":0,"of":3}\n\ndata: {"i":1,"of":3}\n\ndata: {"i":2,"of":3}\n\n'
    bad = client.post("/count", json={"n": -1})
    assert bad.status_code == 400 and "n must be in" in bad.json()["error"]
