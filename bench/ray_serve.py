"""The Ray Serve path (``mest ray serve``) against ``mest serve`` directly, at 1, 8 and 64 connections.

Both serve the same trivial predictor (``bench/apps/echo.py``: sums four floats), so the difference is the
serving path, not the model: ``mest serve`` is gunicorn with one gevent worker; the Ray path is a local Ray
cluster with one replica behind Ray's HTTP proxy (proxy → replica over Ray's RPC, a2wsgi's thread pool in
the replica). The load generator is ``mest bench`` (closed loop, keep-alive), run against each in turn in
the same run, so the ratios are measured on the same machine minutes apart.

Usage::

    .venv/bin/python bench/ray_serve.py                 # prints the table
    .venv/bin/python bench/ray_serve.py --write-docs    # and writes it into docs/benchmarks.md

Needs ``pip install -e '.[gunicorn,ray]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "apps"
DOCS = ROOT / "docs" / "benchmarks.md"
BODY = '{"features": [5.1, 3.5, 1.4, 0.2]}'
BEGIN, END = "<!-- bench:ray:begin -->", "<!-- bench:ray:end -->"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(argv: list[str], ready: str) -> Iterator[subprocess.Popen[str]]:
    """Start ``argv`` in its own session, wait for ``ready`` in its output, stop it by PID afterwards."""
    proc = subprocess.Popen(argv, cwd=APPS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while not any(ready in line for line in lines):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + "".join(lines[-50:]))
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _bench(url: str, duration: str, concurrency: str) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-m", "mest", "bench", url, "--json", BODY, "-c", concurrency,
                        "-d", duration, "-w", "1s", "--json-output", out.name, "--no-progress"],
                       check=True, capture_output=True, timeout=600)
        results: list[dict[str, Any]] = json.loads(Path(out.name).read_text())["results"]
        return results


def measure(duration: str, concurrency: str) -> dict[str, list[dict[str, Any]]]:
    port = _free_port()
    direct = [sys.executable, "-m", "mest", "serve", "echo:app", "--port", str(port), "--workers", "1"]
    with _server(direct, "Listening at"):
        serve = _bench(f"http://127.0.0.1:{port}/sum", duration, concurrency)
    results = {"mest serve": serve}
    # Mest's default (max_ongoing_requests 100 for an unbatched app) against 32 and Ray's own default of 5.
    for label, extra in (("ray serve", []),
                         ("ray serve, max_ongoing_requests 32", ["--max-ongoing-requests", "32"]),
                         ("ray serve, Ray's default max_ongoing_requests 5", ["--max-ongoing-requests", "5"])):
        port = _free_port()
        ray = [sys.executable, "-m", "mest", "ray", "serve", "echo:app", "--replicas", "1", "--port", str(port),
               *extra]
        with _server(ray, " * Mest serving"):
            results[label] = _bench(f"http://127.0.0.1:{port}/sum", duration, concurrency)
    return results


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    rows = ["| path | connections | req/s | p50 ms | p99 ms | errors | oldest unanswered at end, ms "
            "| req/s vs mest serve | p50 vs mest serve |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    base = {r["concurrency"]: r for r in results["mest serve"]}
    for path, points in results.items():
        for r in points:
            b = base[r["concurrency"]]
            rps = f"{r['rps'] / b['rps']:.2f}x" if b["rps"] else "-"
            p50 = f"{r['p50_ms'] / b['p50_ms']:.1f}x" if b["p50_ms"] and r["p50_ms"] else "-"
            rows.append(f"| {path} | {r['concurrency']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                        f"{sum(r['errors'].values())} | {r['oldest_unfinished_ms']:.0f} | {rps} | {p50} |")
    return "\n".join(rows)


def write_docs(text: str, command: str) -> None:
    block = (f"{BEGIN}\n### Run of {time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
             f"{os.cpu_count()} cores (shared), server and load generator unpinned.\n\n"
             f"Command: `{command}`\n\n{text}\n{END}")
    docs = DOCS.read_text()
    if BEGIN in docs:
        docs = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, docs, flags=re.S)
    else:
        docs = docs.rstrip("\n") + "\n\n" + block + "\n"
    DOCS.write_text(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="3s", help="measured time per point (default 3s)")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    text = table(measure(args.duration, args.concurrency))
    print(text)
    if args.write_docs:
        write_docs(text, "python " + " ".join(["bench/ray_serve.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
