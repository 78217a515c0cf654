"""Per-request cost of Mest's observability (metrics, access log), measured in-process with the TestClient.

Each configuration runs in a fresh Python process: a trivial predictor (no model work) answers the same
small JSON request in a loop, through the full WSGI stack (falcon adapter included), and the best of
``--repeats`` timings is reported in microseconds per request. What differs between rows is only what
Mest does around the predictor:

* ``bare``: ``metrics_path=None, access_log=False`` (no observability code runs per request);
* ``metrics``: metrics on, access log off;
* ``metrics+log``: metrics on, access log on, written by a handler to ``/dev/null``;
* ``metrics+log (multiprocess)``: the same with prometheus_client's multiprocess (mmap file) values, as
  under gunicorn.

A second table times the metric calls of one request alone (no HTTP, no predictor), which is steadier than
the difference of two end-to-end timings on a busy machine.

Run from the repository root: ``python bench/observability_overhead.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import logging, os, sys, time
config = sys.argv[1]
n = int(sys.argv[2])
repeats = int(sys.argv[3])
from mest import Mest
from mest.predictors import PredictorBase
from mest.testing import TestClient

class Echo(PredictorBase):
    def pre_process(self, input_data, req):
        return input_data["x"]
    def infer(self, x):
        return x
    def post_process(self, y, req):
        return {"y": y}

if config == "plain":  # a Mest without these settings (an older checkout, for comparison)
    app = Mest()
elif config == "bare":
    app = Mest(metrics_path=None, access_log=False)
else:
    sys.stderr = open(os.devnull, "w")  # Mest's own zero-configuration handler writes there
    app = Mest(access_log=config != "metrics")
app.add_inference_handler(Echo(), "/echo")
client = TestClient(app)
body = {"x": [1.0, 2.0, 3.0]}
for _ in range(2000):
    assert client.post("/echo", json=body).status_code == 200
best = float("inf")
for _ in range(repeats):
    started = time.perf_counter()
    for _ in range(n):
        client.post("/echo", json=body)
    best = min(best, (time.perf_counter() - started) / n)
print(best * 1e6)
"""

_HOOKS = r"""
import logging, os, sys, time
from mest.api import Request, Response
from mest.observability import Observability
access = sys.argv[1] == "access"  # else "metrics"
n = int(sys.argv[2])
repeats = int(sys.argv[3])
sys.stderr = open(os.devnull, "w")  # Mest's own zero-configuration handler writes there
obs = Observability(metrics=not access, access_log=access)
endpoint = obs.endpoint("POST", "/echo")
model = obs.model("echo", None)
req, resp = Request("POST", "/echo"), Response(b"", 200)
endpoint.begin()  # binds this process's metrics
endpoint.end(req, resp, 0.0005)

def one_request():
    endpoint.begin()
    if model is not None:
        model.stage_finished("pre_process", 0.0001)
        model.batch_ran(1, (0.00001,), 0.0002, 0)
        model.stage_finished("post_process", 0.0001)
    endpoint.end(req, resp, 0.0005)

best = float("inf")
for _ in range(repeats):
    started = time.perf_counter()
    for _ in range(n):
        one_request()
    best = min(best, (time.perf_counter() - started) / n)
print(best * 1e6)
"""

#: End to end through the TestClient: row label -> (child argument, multiprocess values).
CONFIGS = {
    "bare": ("bare", False),
    "metrics": ("metrics", False),
    "metrics+log": ("metrics+log", False),
    "metrics+log (multiprocess)": ("metrics+log", True),
}
#: The hooks alone: row label -> (child argument, multiprocess values).
HOOKS = {
    "metric hooks": ("metrics", False),
    "metric hooks (multiprocess)": ("metrics", True),
    "access line": ("access", False),
}


def run(code: str, arg: str, multiprocess: bool, n: int, repeats: int, pythonpath: str | None = None) -> float:
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with tempfile.TemporaryDirectory() as tmp:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = tmp
        out = subprocess.run(
            [sys.executable, "-c", code, arg, str(n), str(repeats)], env=env, check=True, capture_output=True, text=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="requests per timing (x10 for the hooks alone)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--baseline-src", help="also time plain Mest() from this source tree (e.g. an export of an older commit)"
    )
    args = parser.parse_args()
    results = {}
    if args.baseline_src:
        results["baseline (--baseline-src)"] = run(
            _CHILD, "plain", False, args.n, args.repeats, pythonpath=args.baseline_src
        )
    results.update({label: run(_CHILD, arg, mp, args.n, args.repeats) for label, (arg, mp) in CONFIGS.items()})
    hooks = {label: run(_HOOKS, arg, mp, args.n * 10, args.repeats) for label, (arg, mp) in HOOKS.items()}
    if args.json:
        print(json.dumps({**results, **hooks}, indent=2))
        return 0
    bare = results["bare"]
    print(f"{'configuration':<34} {'us/request':>10} {'overhead':>10}")
    for config, us in results.items():
        print(f"{config:<34} {us:>10.1f} {us - bare:>+10.1f}")
    print(f"\n{'the hooks of one request alone':<34} {'us':>10}")
    for config, us in hooks.items():
        print(f"{config:<34} {us:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
