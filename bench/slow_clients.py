"""Slow clients beside a normal one: answers and latency of `mest serve` with and without them.

For each server (``mest serve`` with its defaults, i.e. gevent, and with ``-k gthread``, ``-k sync``,
``--server granian``; one worker each, on loopback) the script measures a normal client (sequential
``POST /sum`` on new connections, 2 s timeout each; once ten in a row go unanswered the rest count as
unanswered) alone, then beside ``--slow`` slow connections: half send
their request head one byte a second, half send a head with ``Content-Length`` and then trickle the body one
byte a second. It reports how many of the normal requests were answered and their p50/p99, and writes the
table and the command to ``bench/results/slow_clients.md`` (copied into docs/benchmarks.md by hand).

    python bench/slow_clients.py --slow 300 --requests 200
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
LISTEN = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
SERVERS = {
    "gevent (default)": [],
    "gthread (4 threads)": ["-k", "gthread"],
    "sync": ["-k", "sync"],
    "granian (4 threads)": ["--server", "granian"],
}


@contextlib.contextmanager
def serve(flags: list[str]) -> Iterator[int]:
    argv = [sys.executable, "-m", "mest", "serve", "basic_app:app", "--host", "127.0.0.1", "--port", "0",
            "-w", "1", *flags]
    proc = subprocess.Popen(argv, cwd=APPS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout or []], daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not (found := LISTEN.search("".join(lines))):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("".join(lines))
            time.sleep(0.05)
        port = int(found.group(1))
        while normal(port, 1, timeout=1.0)[0] == 0:
            time.sleep(0.1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def normal(port: int, count: int, timeout: float = 2.0) -> tuple[int, list[float]]:
    answered, latencies, misses = 0, [], 0
    for i in range(count):
        if misses >= 10:  # ten in a row unanswered: the rest would be too (counted as unanswered)
            break
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            conn.request("POST", "/sum", body=b'{"features": [%d, 1]}' % i,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                answered += 1
                misses = 0
                latencies.append(time.perf_counter() - started)
        except OSError:
            misses += 1
    return answered, latencies


def trickle(port: int, index: int, stop: threading.Event, opened: list[int]) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    opened.append(1)
    with sock:
        if index % 2:
            rest = b"POST /sum HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 10
        else:
            with contextlib.suppress(OSError):
                sock.sendall(b"POST /sum HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n")
            rest = b" " * 100000
        for byte in rest:
            if stop.wait(1.0):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return


def percentile(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    rows = []
    for name, flags in SERVERS.items():
        with serve(flags) as port:
            alone, alone_lat = normal(port, args.requests)
            stop, opened = threading.Event(), []
            threads = [threading.Thread(target=trickle, args=(port, i, stop, opened), daemon=True)
                       for i in range(args.slow)]
            for thread in threads:
                thread.start()
            time.sleep(3)  # let them connect and start trickling
            beside, beside_lat = normal(port, args.requests)
            stop.set()
            for thread in threads:
                thread.join(5)
        rows.append(f"| {name} | {alone}/{args.requests} | {statistics.median(alone_lat) * 1000:.1f} | "
                    f"{percentile(alone_lat, 0.99)} | {len(opened)} | {beside}/{args.requests} | "
                    f"{percentile(beside_lat, 0.5)} | {percentile(beside_lat, 0.99)} |")
        print(rows[-1], flush=True)
    command = f"python bench/slow_clients.py --slow {args.slow} --requests {args.requests}"
    table = "\n".join([
        f"`{command}`",
        "",
        "| server (1 worker) | answered alone | p50 ms | p99 ms | slow connections | answered beside them "
        "| p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ])
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "slow_clients.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
