"""What the model queue's batch-of-one path buys: one request through ``Batcher.answer`` (what the pipeline
calls) with an idle, unbatched model on OS threads, by its own path (``_run_alone``) and by the general leader
path it would otherwise take (an item queued, a batch formed, a hand-over), in the same process, interleaved.

Usage::

    python bench/queue_paths.py [--n 20000] [--repeats 15]

Prints the minimum and median µs per call of each path and their ratio. The general path is forced by
switching the per-process flag the batcher sets for itself (a private attribute: this is a measurement of
the implementation, not of the API).
"""

from __future__ import annotations

import argparse
import statistics
import time

from mest.batching import Batcher


def per_submit_us(*, alone: bool, n: int) -> float:
    batcher = Batcher(lambda x: x)
    batcher._state.run_at_once = alone
    submit = batcher.answer  # what the pipeline calls: the answer with its batch figures
    started = time.perf_counter()
    for i in range(n):
        submit(i)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"batch of one": [], "general": []}
    for _ in range(args.repeats):
        results["batch of one"].append(per_submit_us(alone=True, n=args.n))
        results["general"].append(per_submit_us(alone=False, n=args.n))
    for name, values in results.items():
        print(f"  {name:<13} min {min(values):5.2f} µs  median {statistics.median(values):5.2f} µs per answer")
    ratio = min(results["general"]) / min(results["batch of one"])
    print(f"  general / batch of one (min to min): {ratio:.2f}x")


if __name__ == "__main__":
    main()
