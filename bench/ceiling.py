"""The model-only ceiling: the W2 predictor's ``infer`` replaying the batch sizes a server run formed.

No HTTP, no queue, no pre/post-processing: just ``infer`` on batches of exactly the sizes (and in the order)
the server formed during its measured window, on the same sentences, cycling until ``--duration`` seconds
have passed. ``bench/batching.py`` runs it pinned to the server's core, with the server stopped.

Prints one JSON object: items, seconds, items_per_s, mean_batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", required=True, help="JSON file: the list of batch sizes to replay")
    parser.add_argument("--bodies-file", required=True, help="the request bodies the load generator sent")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1, help="measure this many windows, keep the fastest")
    parser.add_argument("--curve", default="1,8,32,64", help="also time fixed batch sizes (ms per sentence)")
    args = parser.parse_args()

    from w2_embed import Embedder

    sizes = [int(s) for s in json.loads(Path(args.sizes).read_text())]
    texts = [json.loads(line)["text"] for line in Path(args.bodies_file).read_text().splitlines() if line]
    predictor = Embedder(log=None, batched=True)
    predictor.setup()
    cursor = 0

    def run_one(size: int) -> None:
        nonlocal cursor
        batch = [texts[(cursor + i) % len(texts)] for i in range(size)]
        cursor += size
        out = predictor.infer(batch)
        assert len(out) == size

    def replay(sequence: list[int], duration: float) -> dict[str, float]:
        """Run batches of the given sizes, cycling, for ``duration`` seconds (and at least one pass)."""
        items = batches = 0
        wall, cpu = time.perf_counter(), time.process_time()
        while True:
            size = sequence[batches % len(sequence)]
            run_one(size)
            items += size
            batches += 1
            elapsed = time.perf_counter() - wall
            if (elapsed >= duration and batches >= len(sequence)) or elapsed >= 4 * duration:
                break
        cpu_s = time.process_time() - cpu
        return {
            "items": items,
            "seconds": round(elapsed, 3),
            "cpu_seconds": round(cpu_s, 3),
            "items_per_s": round(items / elapsed, 1),
            "items_per_cpu_s": round(items / cpu_s, 1),
            "mean_batch": round(items / batches, 2),
        }

    replay(sizes, args.warmup)
    # Best of --repeat windows: the ceiling is what the model can do when nothing else disturbs it.
    result = max((replay(sizes, args.duration) for _ in range(args.repeat)), key=lambda r: r["items_per_s"])
    curve = {}
    for size in (int(s) for s in args.curve.split(",") if s):
        point = max(
            (replay([size], max(1.0, args.duration / 4)) for _ in range(args.repeat)),
            key=lambda r: r["items_per_s"],
        )
        curve[str(size)] = {
            "ms_per_item_wall": round(1000.0 / point["items_per_s"], 2),
            "ms_per_item_cpu": round(1000.0 / point["items_per_cpu_s"], 2),
        }
    result["curve"] = curve
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
