"""In-process overhead of Mest per request: a WSGI call through Mest vs the same model in a bare falcon resource.

No sockets: both apps are called directly with the same WSGI environ, so the difference is exactly what Mest
adds per request (routing through its adapter, request object, request id, JSON decode/encode, queue hand-off,
metrics, access log). Mest runs with its defaults: metrics, access log and request ids on. The access log goes
through Mest's own handler to ``os.devnull`` (``sys.stderr`` is redirected), so it is formatted and written
but costs no terminal I/O.

Usage::

    python bench/overhead.py                 # trivial model (isolates Mest's own cost)
    python bench/overhead.py --model iris    # the seed's LogisticRegression (needs examples/iris trained)
    python bench/overhead.py --adapters      # also: every request through falcon's router, and PlainWSGI
    python bench/overhead.py --breakdown     # also: without the access log, without metrics, without both
    python bench/overhead.py --pipeline      # also Mest's pipeline alone (decode, stages, queue, metrics)

Prints the median over repeats of µs per request for each app, and Mest's overhead in µs. ``--pipeline`` adds
the model's ``Pipeline`` called directly with a ready-made ``mest.api.Request`` (no adapter, no endpoint
wrapper, no access line): the share of the pipeline, the queue and the model's metrics.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import falcon
import numpy as np
import orjson

from mest import Mest
from mest.api import Request
from mest.predictors import PredictorBase

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"features": [[5.1, 3.5, 1.4, 0.2]]}'


def load_model(kind: str) -> Callable[[Any], Any]:
    if kind == "iris":
        import joblib

        model = joblib.load(ROOT / "examples" / "iris" / "models" / "logistic_regression.pkl")
        return lambda features: model.predict_proba(features)[0]
    constant = np.array([0.9, 0.05, 0.05])
    return lambda features: constant


def mest_app(predict: Callable[[Any], Any], web_framework: Any = None, **settings: Any) -> Mest:
    class Predictor(PredictorBase):
        def pre_process(self, input_data: Any, req: Any) -> Any:
            return input_data["features"]

        def infer(self, processed_data: Any) -> Any:
            return predict(processed_data)

        def post_process(self, prediction: Any, req: Any) -> Any:
            return {"probability": prediction}

    app = Mest(web_framework=web_framework, **settings)
    app.add_inference_handler(Predictor(), "/api/v1/predict")
    return app


def falcon_app(predict: Callable[[Any], Any]) -> falcon.App:  # type: ignore[type-arg]
    class Resource:
        def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
            data = orjson.loads(req.bounded_stream.read())
            resp.data = orjson.dumps({"probability": predict(data["features"])}, option=orjson.OPT_SERIALIZE_NUMPY)

    app = falcon.App()
    app.add_route("/api/v1/predict", Resource())
    return app


def environ() -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/predict",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(BODY),
        "CONTENT_LENGTH": str(len(BODY)),
        "CONTENT_TYPE": "application/json",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.input_terminated": True,
        "HTTP_HOST": "bench",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
        "REMOTE_ADDR": "127.0.0.1",
    }


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    pass


def per_request_us(app: Callable[..., Iterable[bytes]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        b"".join(app(environ(), _start_response))
    return (time.perf_counter() - started) / n * 1e6


def pipeline_us(app: Mest, n: int) -> float:
    pipeline = app.pipelines[0]
    headers = {"content-type": "application/json"}
    requests = [Request("POST", "/api/v1/predict", headers=headers, body=BODY) for _ in range(n)]
    started = time.perf_counter()
    for req in requests:
        pipeline(req)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["trivial", "iris"], default="trivial")
    parser.add_argument("-n", type=int, default=20000, help="requests per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--adapters", action="store_true",
        help="also Mest on a falcon app passed in (every request through falcon's router and objects) and on "
        "the dependency-free PlainWSGI adapter",
    )
    parser.add_argument("--pipeline", action="store_true", help="also time the pipeline alone")
    parser.add_argument(
        "--breakdown", action="store_true",
        help="also Mest without its access log, without metrics, and without both (what each costs)",
    )
    args = parser.parse_args()
    # Mest's zero-configuration handler (what a bare `gunicorn app:app` gets) writes to stderr: send it nowhere.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    predict = load_model(args.model)
    mest = mest_app(predict)
    apps: dict[str, Callable[..., Iterable[bytes]]] = {"mest": mest, "falcon": falcon_app(predict)}
    if args.adapters:
        from mest.webframeworks.falcon import FalconFramework
        from mest.webframeworks.wsgi import PlainWSGI

        apps["mest-via-falcon"] = mest_app(predict, FalconFramework(falcon.App()))
        apps["mest-plain"] = mest_app(predict, PlainWSGI())
    if args.breakdown:
        apps["mest-no-access-log"] = mest_app(predict, access_log=False)
        apps["mest-no-metrics"] = mest_app(predict, metrics_path=None)
        apps["mest-neither"] = mest_app(predict, access_log=False, metrics_path=None)
    outputs = {name: b"".join(app(environ(), _start_response)) for name, app in apps.items()}
    for name in apps:
        assert orjson.loads(outputs[name]) == orjson.loads(outputs["falcon"]), outputs
    samples: dict[str, list[float]] = {name: [] for name in apps}
    if args.pipeline:
        samples["pipeline"] = []
    for _ in range(args.repeats):  # alternate, so drift on a noisy machine hits both alike
        for name, app in apps.items():
            samples[name].append(per_request_us(app, args.n))
        if args.pipeline:
            samples["pipeline"].append(pipeline_us(mest, args.n))
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"model={args.model} n={args.n} repeats={args.repeats}")
    for name, value in med.items():
        ratio = value / med["falcon"]
        print(f"  {name:<16} {value:8.1f} µs/request (min {min(samples[name]):.1f}), {ratio:.2f}x bare falcon")
    print(
        f"  overhead {med['mest'] - med['falcon']:8.1f} µs/request (min-to-min "
        f"{min(samples['mest']) - min(samples['falcon']):.1f})"
    )


if __name__ == "__main__":
    main()
