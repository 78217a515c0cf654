#!/usr/bin/env python3
"""Warmup before readiness: the first request after ``/health/ready`` against the steady-state p50.

    .venv/bin/python bench/warmup.py --rounds 5 --requests 200

For each model (iris in ONNX, converted with skl2onnx; a 4-256-256-3 MLP as a ``torch.export`` program) and
for ``"warmup": 0`` (none) and ``"warmup": 1`` (the default: one inference on generated inputs in each worker
before it is ready), each round:

1. starts ``mest serve --model-repository`` (gunicorn, one sync worker, the server pinned to core 0 with
   ``taskset`` when there are two cores), and polls ``/health/ready`` until it answers 200;
2. times the first request to the model's own route (a new connection, like every request here);
3. times ``--requests`` more and takes their median (p50);
4. stops the server.

It prints a Markdown table (medians over rounds of the first request, the p50, and their ratio) and the
command, for docs/benchmarks.md. Needs the ``onnx`` and ``torch`` extras and skl2onnx.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROW = json.dumps({"input": [[5.1, 3.5, 1.4, 0.2]]}).encode()
LISTEN = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def make_repository(root: Path) -> None:
    import numpy as np
    import skl2onnx
    import torch
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    onx = skl2onnx.convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))],
                                   options={id(model): {"zipmap": False}}, target_opset=17)
    (root / "onnx" / "1").mkdir(parents=True)
    (root / "onnx" / "1" / "model.onnx").write_bytes(onx.SerializeToString())
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 3)).eval()
    program = torch.export.export(mlp, (torch.zeros(2, 4),), dynamic_shapes=({0: torch.export.Dim("b", max=1024)},))
    (root / "torch" / "1").mkdir(parents=True)
    torch.export.save(program, str(root / "torch" / "1" / "model.pt2"))
    del np


def post(port: int, path: str) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, ROW, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    elapsed = time.perf_counter() - started
    if answer.status != 200:
        raise RuntimeError(f"{path} answered {answer.status}")
    return elapsed


def wait_ready(port: int, proc: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("never ready")


def one_round(repo: Path, name: str, requests: int) -> tuple[float, float]:
    taskset = ["taskset", "-c", "0"] if (os.cpu_count() or 1) >= 2 else []
    argv = [*taskset, sys.executable, "-m", "mest", "serve", f"--model-repository={repo}", "--port", "0",
            "--workers", "1", "--worker-class", "sync"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEST_ACCESS_LOG": "false", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        output = ""
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while not (found := LISTEN.search(output)):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{output}")
            output += line
        port = int(found.group(1))
        wait_ready(port, proc, deadline)
        first = post(port, f"/models/{name}")
        steady = statistics.median(post(port, f"/models/{name}") for _ in range(requests))
        return first, steady
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        make_repository(repo)
        for name in ("onnx", "torch"):
            for warmup in (0, 1):
                for other in ("onnx", "torch"):  # only the measured model in the repository
                    (repo / other / "mest.json").write_text(json.dumps({"warmup": warmup}))
                results = [one_round(repo, name, args.requests) for _ in range(args.rounds)]
                first = statistics.median(r[0] for r in results)
                p50 = statistics.median(r[1] for r in results)
                rows.append((name, warmup, first * 1e3, p50 * 1e3, first / p50))
                print(f"{name} warmup={warmup}: first {first * 1e3:.2f} ms, p50 {p50 * 1e3:.2f} ms", file=sys.stderr)
    print(f"Command: `{shlex.join(['.venv/bin/python', 'bench/warmup.py', *sys.argv[1:]])}`\n")
    print("| model | warmup | first request after ready (ms) | steady p50 (ms) | first / p50 |")
    print("| --- | --- | --- | --- | --- |")
    for name, warmup, first_ms, p50_ms, ratio in rows:
        print(f"| {name} | {warmup} | {first_ms:.2f} | {p50_ms:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
