"""The OpenAI-compatible routes on real servers, driven by the official ``openai`` client (sync and
streaming), serving ``tests/apps/openai_app.py`` (a toy generator and a toy embedder, labelled as such)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from support.mest_serve import serve_on
from support.servers import RunningServer

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.server

SERVERS = ["dev", "gthread", "mest-gevent", "mest-granian"]
KEY = "sk-test-0123456789abcdef"


def serve(kind: str, env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[RunningServer]:
    return serve_on(kind, "openai_app", env=env)


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with serve(request.param) as running_server:
        yield running_server


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()  # their keep-alive sockets, before the server goes


def client_for(server: RunningServer, key: str = "unused") -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)
    _CLIENTS.append(client)
    return client


def toy_vector(text: str) -> np.ndarray:
    import hashlib

    vector = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], dtype=np.uint8).astype(np.float64) + 1.0
    return vector / np.linalg.norm(vector)


def test_models_lists_the_declaring_models(server: RunningServer) -> None:
    assert sorted(model.id for model in client_for(server).models.list()) == ["echo", "hash-embed"]


def test_chat_completion_whole(server: RunningServer) -> None:
    reply = client_for(server).chat.completions.create(
        model="echo", messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "one two three"}]
    )
    assert reply.object == "chat.completion" and reply.model == "echo"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "three two one"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (3, 3, 6)


def test_chat_completion_streamed_in_delta_chunks(server: RunningServer) -> None:
    stream = client_for(server).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "a b c d"}], stream=True, max_tokens=3
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "d c b"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (4, 3)
    assert len({c.id for c in chunks}) == 1


def test_legacy_completions_whole_and_streamed(server: RunningServer) -> None:
    client = client_for(server)
    whole = client.completions.create(model="echo", prompt="x y z")
    assert whole.choices[0].text == "z y x" and whole.choices[0].finish_reason == "stop"
    pieces = [c.choices[0].text for c in client.completions.create(model="echo", prompt="x y z", stream=True)]
    assert "".join(pieces) == "z y x" and len(pieces) == 4  # three pieces, then the finish chunk


def test_embeddings_float_base64_and_dimensions(server: RunningServer) -> None:
    client = client_for(server)
    texts = [f"text {i}" for i in range(8)]
    # The client asks for base64 by default and decodes it itself.
    got = client.embeddings.create(model="hash-embed", input=texts)
    assert [d.index for d in got.data] == list(range(8))
    for text, item in zip(texts, got.data, strict=True):
        np.testing.assert_allclose(item.embedding, toy_vector(text), rtol=1e-6)
    single = client.embeddings.create(model="hash-embed", input="solo", encoding_format="float")
    np.testing.assert_allclose(single.data[0].embedding, toy_vector("solo"), rtol=1e-6)
    short = client.embeddings.create(model="hash-embed", input="solo", dimensions=3, encoding_format="float")
    expected = toy_vector("solo")[:3]
    np.testing.assert_allclose(short.data[0].embedding, expected / np.linalg.norm(expected), rtol=1e-6)
    raw = httpx.post(
        server.url + "/v1/embeddings", json={"model": "hash-embed", "input": "solo", "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, toy_vector("solo"), rtol=1e-6)


def test_the_inputs_of_one_embeddings_request_share_infer_calls(server: RunningServer) -> None:
    def batches() -> float:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith('mest_batch_size_count{model="hash-embed"'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = batches()
    client_for(server).embeddings.create(model="hash-embed", input=[f"t{i}" for i in range(8)])
    assert batches() - before < 8


def test_errors_come_in_openai_shape(server: RunningServer) -> None:
    client = client_for(server)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="hash-embed", input="x", dimensions=0)
    assert bad.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError) as several:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], n=2)
    assert several.value.param == "n"
    raw = httpx.post(
        server.url + "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert raw.status_code == 400 and raw.headers["x-request-id"]
    # Wrong types are refused the same way.
    raw = httpx.post(server.url + "/v1/chat/completions", json={"model": "echo", "messages": "hi"})
    body = raw.json()
    assert raw.status_code == 400 and body["error"]["param"] == "messages"
    assert body["error"]["request_id"] == raw.headers["x-request-id"]


def test_api_keys_are_bearer_tokens() -> None:
    with serve("mest-gevent", env={"MEST_API_KEYS": KEY}) as server:
        with pytest.raises(openai.AuthenticationError):
            client_for(server, "wrong").models.list()
        reply = client_for(server, KEY).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "ok fine"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in reply if c.choices) == "fine ok"


def test_a_client_leaving_a_chat_stream_closes_it(server: RunningServer) -> None:
    import json
    import socket
    import struct

    from support.mest_serve import wait_for

    words = " ".join(f"w{i}" for i in range(5000))
    body = json.dumps({"model": "echo", "stream": True, "delay_ms": 20,
                       "messages": [{"role": "user", "content": words}]}).encode()
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while received.count(b"data: ") < 3:  # the role chunk and two pieces: the stream is running
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def closed() -> bool:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        return 'mest_streams_total{model="echo",outcome="client_closed",version=""}' in text

    wait_for(closed, 60, "the chat stream to be counted as closed by the client", server)
