"""The OpenAI-compatible routes in process, on every adapter: shapes, validation, errors, routing by model.
The official client against real servers: test_openai_servers.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mest import Mest
from mest.api import Response
from mest.predictors import PredictorBase
from mest.testing import TestClient


class Chat(PredictorBase):
    openai_api = ("chat", "completions")

    def infer(self, body: Any) -> Any:
        return body

    def post_process(self, body: Any, req: Any) -> Iterator[Any]:
        if body.get("user") == "custom":
            return Response({"mine": True}, status=202)  # type: ignore[return-value]
        if body.get("user") == "explode-late":
            def late() -> Iterator[str]:
                yield "first"
                raise RuntimeError("/secret/path")
            return late()
        return iter(["x", "y"])


class Embed(PredictorBase):
    openai_api = "embeddings"

    def infer(self, text: Any) -> Any:
        return [float(len(text)), 0.0, 0.0]


class Plain(PredictorBase):
    def infer(self, data: Any) -> Any:
        return data


@pytest.fixture
def client(make_app: Callable[..., Mest]) -> TestClient:
    app = make_app()
    app.add_inference_handler(Chat(), "/chat", name="chat")
    app.add_inference_handler(Embed(), "/embed", name="embed")
    app.add_inference_handler(Plain(), "/plain", name="plain")
    return TestClient(app)


def test_models_lists_only_declaring_models(client: TestClient) -> None:
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["chat", "embed"]


def test_a_model_serves_only_the_apis_it_declares(client: TestClient) -> None:
    wrong = client.post("/v1/embeddings", json={"model": "chat", "input": "x"})
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "model_not_found"
    plain = client.post("/v1/chat/completions", json={"model": "plain", "messages": [{"role": "user"}]})
    assert plain.status_code == 404


def test_completion_shapes_whole_and_streamed(client: TestClient) -> None:
    whole = client.post("/v1/completions", json={"model": "chat", "prompt": ["p"]}).json()
    assert whole["object"] == "text_completion" and whole["choices"][0]["text"] == "xy"
    assert whole["usage"] == {"prompt_tokens": 0, "completion_tokens": 2, "total_tokens": 2}
    streamed = client.post(
        "/v1/chat/completions", json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": "q"}]}
    )
    events = streamed.content.decode().strip().split("\n\n")
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "x"},
                                                          {"content": "y"}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "usage" in chunks[-1]


def test_a_failure_mid_stream_is_an_openai_error_event_without_details(client: TestClient) -> None:
    resp = client.post("/v1/chat/completions", json={
        "model": "chat", "stream": True, "user": "explode-late", "messages": [{"role": "user", "content": "q"}],
    })
    events = resp.content.decode().strip().split("\n\n")
    error = json.loads(events[-1][len("data: "):])["error"]
    assert error["type"] == "server_error" and error["request_id"] == resp.headers["x-request-id"]
    assert "secret" not in resp.text and "[DONE]" not in resp.text


def test_a_predictors_own_response_is_sent_as_it_is(client: TestClient) -> None:
    resp = client.post("/v1/chat/completions", json={"model": "chat", "user": "custom", "messages": [{"role": "u"}]})
    assert resp.status_code == 202 and resp.json() == {"mine": True}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "embed"}, "input"),
        ({"model": "embed", "input": []}, "input"),
        ({"model": "embed", "input": [[1, 2]]}, "input"),
        ({"model": "embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "embed", "input": "x", "dimensions": 2}, "dimensions"),
        ({"model": "embed", "input": "x", "dimensions": True}, "dimensions"),
        ({"model": 5, "input": "x"}, "model"),
    ],
)
def test_embeddings_validation(client: TestClient, body: dict[str, Any], param: str) -> None:
    resp = client.post("/v1/embeddings", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_a_non_object_body_and_an_empty_one(client: TestClient) -> None:
    assert client.post("/v1/embeddings", json=[1]).json()["error"]["type"] == "invalid_request_error"
    empty = client.post("/v1/chat/completions", content=b"", headers={"Content-Type": "application/json"})
    assert empty.status_code == 400


def test_the_inputs_of_one_request_are_one_batch(make_app: Callable[..., Mest]) -> None:
    class Recording(PredictorBase):
        openai_api = "embeddings"

        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def infer(self, texts: list[str]) -> list[list[float]]:
            self.batches.append(len(texts))
            return [[float(len(t))] for t in texts]

    predictor = Recording()
    app = make_app()
    # A long window: the batch leaves when full, which it is once every announced input has arrived.
    app.add_inference_handler(predictor, "/e", name="e", max_batch_size=4, max_batch_delay_ms=30000)
    resp = TestClient(app).post("/v1/embeddings", json={"model": "e", "input": ["a", "bb", "ccc", "dddd", "eeeee"]})
    assert [d["embedding"] for d in resp.json()["data"]] == [[1.0], [2.0], [3.0], [4.0], [5.0]]
    assert predictor.batches == [4, 1]


def test_a_failing_input_fails_the_request_and_leaves_the_queue_usable(make_app: Callable[..., Mest]) -> None:
    class Picky(PredictorBase):
        openai_api = "embeddings"

        def pre_process(self, text: str, req: Any) -> str:
            if text == "bad":
                raise ValueError("no bad inputs")
            return text

        def infer(self, texts: list[str]) -> list[list[float]]:
            return [[1.0] for _ in texts]

    app = make_app()
    app.add_inference_handler(Picky(), "/p", name="p", max_batch_size=4, max_batch_delay_ms=30000)
    client = TestClient(app)
    bad = client.post("/v1/embeddings", json={"model": "p", "input": ["a", "bad", "c"]})
    assert bad.status_code == 400 and "no bad inputs" in bad.json()["error"]["message"]
    good = client.post("/v1/embeddings", json={"model": "p", "input": ["a", "b", "c", "d"]})
    assert good.status_code == 200 and len(good.json()["data"]) == 4
