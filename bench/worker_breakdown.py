"""Where a request's time goes in a real gunicorn worker: Mest vs the hand-written falcon app, W1.

The in-process microbenchmark (bench/overhead.py) runs one request after another in a hot loop. In a worker
under load, the kernel's and gunicorn's work between two requests evicts the caches, and Mest's per-request
code costs several times more. This measures it where it matters: gunicorn sync, one worker pinned to core 0,
``wrk`` (one thread, 8 connections) pinned to core 1, the app wrapped by ``bench/peers/apps/timed.py``, which
reports the mean time inside the WSGI call and inside the model's ``predict_proba``. Configurations alternate
over ``--repeats``; medians are printed. Needs the peer venvs (``python bench/peers/setup_envs.py``).

    python bench/worker_breakdown.py [--duration 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
APPS = ROOT / "peers" / "apps"
VENVS = ROOT / ".venvs" / "peers"
BODY = b'{"features": [[5.1, 3.5, 1.4, 0.2]]}'
CONFIGS = {  # name -> (venv, target, extra environment)
    "falcon": ("falcon", "falcon_app", {}),
    "mest": ("mest", "mest_app", {}),
    "mest, access log off": ("mest", "mest_app", {"MEST_ACCESS_LOG": "0"}),
    "mest, log and metrics off": ("mest", "mest_app", {"MEST_ACCESS_LOG": "0", "MEST_METRICS_PATH": ""}),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(venv: str, target: str, extra: dict[str, str], duration: float) -> tuple[float, float, float]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "BENCH_WORKLOAD": "W1", "BENCH_MODEL": str(VENVS / venv / "iris.joblib"), "TIMED_TARGET": target, **extra}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - a file, not a pipe: a pipe nobody reads fills up
    server = subprocess.Popen(
        ["taskset", "-c", "0", str(VENVS / venv / "bin" / "python"), "-m", "gunicorn", "-k", "sync", "-w", "1",
         "-b", f"127.0.0.1:{port}", "timed:app"],
        cwd=APPS, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/predict"
        for _ in range(200):
            try:
                request = urllib.request.Request(url, BODY, {"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        body = ROOT / ".venvs" / "worker-breakdown-body.json"
        body.write_bytes(BODY)
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c8", "-s", str(ROOT / "peers" / "wrk" / "post.lua"), url]
        wrk_env = {**os.environ, "WRK_BODY_FILE": str(body)}
        subprocess.run([*wrk[:4], "-d2", *wrk[4:]], env=wrk_env, capture_output=True, check=True)  # warm-up
        out = subprocess.run([*wrk[:4], f"-d{duration:g}", *wrk[4:]], env=wrk_env, capture_output=True, text=True,
                             check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.seek(0)
        output = log.read()
        log.close()
    timed = re.search(r"app_us=([\d.]+) model_us=([\d.]+)", output)
    assert timed, output
    return rps, float(timed.group(1)), float(timed.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, (venv, target, extra) in CONFIGS.items():
            samples[name].append(measure(venv, target, extra, args.duration))
    falcon_rps = statistics.median(s[0] for s in samples["falcon"])
    print("| configuration | req/s | ÷ falcon | µs per request | µs in the app | µs in the model |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, values in samples.items():
        rps, app_us, model_us = (statistics.median(v[i] for v in values) for i in range(3))
        print(f"| {name} | {rps:,.0f} | {rps / falcon_rps:.2f}x | {1e6 / rps:.0f} | {app_us:.0f} | {model_us:.0f} |")


if __name__ == "__main__":
    main()
