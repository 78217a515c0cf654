"""Streaming through Mest against the bare generator: time to first item and items per second.

Three rows, one gunicorn configuration (``-k gevent -w 1``, loopback):

* *generator in process*: the generator alone, each item JSON-encoded and SSE-framed, no server (the ceiling);
* *bare WSGI*: a ten-line WSGI app returning that generator as its body, on the same gunicorn (the baseline:
  what any WSGI streaming costs);
* *Mest*: the same generator returned by a predictor's ``post_process`` (request id, queue, metrics, framing).

Time to first item: from sending the request to receiving the first ``data:`` byte (median of 200 requests of
one item). Items/s: one stream of N items read to its end (best of 3). The client is a raw socket reader in
this process. Usage::

    python bench/streaming.py [--items 50000] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "apps"))
LISTEN = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
BEGIN, END = "<!-- bench:streaming:begin -->", "<!-- bench:streaming:end -->"


def start(app: str) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", "127.0.0.1:0", app]
    proc = subprocess.Popen(argv, cwd=ROOT / "bench" / "apps", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = LISTEN.search(line)
        if found:
            return proc, int(found.group(1))
    raise RuntimeError(f"{app} did not start")


def request(port: int, n: int) -> tuple[float, float, int]:
    """(seconds to the first item, seconds to the end, bytes of body) of one stream of ``n`` items."""
    body = json.dumps({"n": n}).encode()
    head = (f"POST /count HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        sock.sendall(head + body)
        received, first = b"", None
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk if first is None else b""
            if first is None and b"data: " in received.partition(b"\r\n\r\n")[2]:
                first = time.perf_counter() - started
        return first or 0.0, time.perf_counter() - started, len(received)


def measure_server(app: str, items: int) -> dict[str, float]:
    proc, port = start(app)
    try:
        for _ in range(20):  # warm-up: the worker imports and sets up on its first requests
            request(port, 10)
        ttfi = statistics.median(request(port, 1)[0] for _ in range(200))
        best = min(request(port, items)[1] for _ in range(3))
        return {"ttfi_ms": ttfi * 1000, "items_per_s": items / best}
    finally:
        proc.terminate()
        proc.wait(20)


def measure_generator(items: int) -> dict[str, float]:
    import orjson
    from stream_apps import items as produce

    def run(n: int) -> tuple[float, float]:
        started = time.perf_counter()
        first = None
        for item in produce(n):
            b"data: " + orjson.dumps(item) + b"\n\n"
            if first is None:
                first = time.perf_counter() - started
        return first or 0.0, time.perf_counter() - started

    ttfi = statistics.median(run(1)[0] for _ in range(200))
    best = min(run(items)[1] for _ in range(3))
    return {"ttfi_ms": ttfi * 1000, "items_per_s": items / best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50000)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    rows = {
        "generator in process": measure_generator(args.items),
        "bare WSGI (gunicorn gevent)": measure_server("stream_apps:bare_app", args.items),
        "Mest (gunicorn gevent)": measure_server("stream_apps:mest_app", args.items),
    }
    bare, mest = rows["bare WSGI (gunicorn gevent)"], rows["Mest (gunicorn gevent)"]
    lines = [
        f"### Run of {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        f"Command: `python bench/streaming.py --items {args.items}{' --write-docs' if args.write_docs else ''}` "
        "(2 shared cores, no pinning: absolute numbers vary a lot between runs on this machine, "
        "compare the ratios measured in one run)",
        "",
        "| path | time to first item, ms | items/s |",
        "| --- | ---: | ---: |",
        *[f"| {name} | {row['ttfi_ms']:.3f} | {row['items_per_s']:,.0f} |" for name, row in rows.items()],
        "",
        f"Mest against bare WSGI on the same server: time to first item x{mest['ttfi_ms'] / bare['ttfi_ms']:.2f}, "
        f"items/s x{mest['items_per_s'] / bare['items_per_s']:.2f}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        docs = ROOT / "docs" / "benchmarks.md"
        current = docs.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in current:
            current = current[: current.index(BEGIN)] + block + current[current.index(END) + len(END):]
        else:
            heading = "\n\n## Streaming (`bench/streaming.py`)\n\n"
            current = current.rstrip("\n") + heading + _INTRO + "\n\n" + block + "\n"
        docs.write_text(current)


_INTRO = (
    "Time to first item and items per second of one SSE stream through Mest, against the same generator in a "
    "bare WSGI app on the same gunicorn (`-k gevent -w 1`, loopback, no pinning) and against the generator alone "
    "in process. See the module docstring for the method."
)

if __name__ == "__main__":
    main()
