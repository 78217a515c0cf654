"""The app the OpenAI-compatible route tests serve: a toy chat/completions model and a toy embedder.

``echo``: a clearly labelled TOY generator (no language model): it answers the last user message's words
in reverse order, one word per streamed piece, and stops at ``max_tokens`` words (``finish_reason="length"``).
``hash-embed``: a TOY embedder: an 8-dimensional unit vector from a hash of the text, batched (up to 8 inputs
per ``infer`` call), truncatable (``openai_dimensions``). ``MEST_API_KEYS`` turns on API keys.
"""

import hashlib
import time

import numpy as np

from mest import Mest
from mest.predictors import PredictorBase


def toy_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()[:8]
    vector = np.frombuffer(digest, dtype=np.uint8).astype(np.float64) + 1.0
    return (vector / np.linalg.norm(vector)).tolist()


class Echo(PredictorBase):
    openai_api = ("chat", "completions")

    def pre_process(self, body, req):
        if "messages" in body:
            prompt = " ".join(str(m.get("content", "")) for m in body["messages"] if m["role"] == "user")
            last = next(str(m.get("content", "")) for m in reversed(body["messages"]) if m["role"] == "user")
        else:
            prompt = last = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        req.context["usage"] = {"prompt_tokens": len(prompt.split())}
        return last.split()[::-1], limit, float(body.get("delay_ms", 0)) / 1000.0

    def infer(self, processed_data):
        return processed_data

    def post_process(self, prediction, req):
        words, limit, delay_s = prediction

        def pieces():
            for i, word in enumerate(words):
                if limit is not None and i >= limit:
                    yield {"text": "", "finish_reason": "length"}
                    return
                if i and delay_s:
                    time.sleep(delay_s)
                yield word if i == 0 else " " + word

        return pieces()


class HashEmbed(PredictorBase):
    openai_api = "embeddings"
    openai_dimensions = True

    def infer(self, texts):
        return [toy_vector(text) for text in texts]


app = Mest(title="OpenAI-compatible test app")
app.add_inference_handler(Echo(), "/echo", name="echo")
app.add_inference_handler(HashEmbed(), "/embed", name="hash-embed", max_batch_size=8, max_batch_delay_ms=500)

if __name__ == "__main__":
    app.run()
