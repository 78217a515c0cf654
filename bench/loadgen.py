"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, one request in flight on each.

The engine is Mest's own (``mest.loadgen``, the one ``mest bench`` runs): single-threaded ``selectors`` over
non-blocking sockets with request bytes built once, so one core drives tens of thousands of requests/s and the
generator is never the bottleneck; ``bench/batching.py`` pins it to its own core. Loopback only: the URL's
host must be 127.0.0.1, localhost or ::1.

Each connection sends a request, waits for the whole response, and sends the next one at once (closed loop:
the offered load adapts to the server, like N users clicking as fast as the server answers). Requests sent
during the warm-up are not measured. Latency is measured from the first byte sent to the last byte received.

Usage::

    python bench/loadgen.py http://127.0.0.1:8000/embed --body '{"text": "hello"}' -c 64 -d 10 -w 3

prints one JSON object: requests, rps, p50_ms, p99_ms, mean_ms, errors (by status or exception name).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from mest.loadgen import Checker, LoadResult, run_load

__all__ = ["Checker", "LoadResult", "run_load"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/api/v1/predict (loopback only)")
    parser.add_argument("--body", action="append", default=[], help="JSON request body (repeatable)")
    parser.add_argument("--bodies-file", help="a file of request bodies, one JSON document per line")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("-w", "--warmup", type=float, default=2.0, help="unmeasured seconds first")
    args = parser.parse_args(argv)
    bodies = [b.encode() for b in args.body]
    if args.bodies_file:
        with open(args.bodies_file, "rb") as f:
            bodies += [line.rstrip(b"\n") for line in f if line.strip()]
    if not bodies:
        parser.error("give --body or --bodies-file")
    if urlsplit(args.url).hostname not in _LOOPBACK:
        parser.error("loopback only: the benchmark never loads another host")
    result = run_load(
        args.url,
        bodies,
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
    )
    json.dump(result.summary(), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
