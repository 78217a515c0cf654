"""Peak memory and time of decoding the worst V2 JSON bodies within the default 10 MiB limit.

Each case is one ``/v2/models/NAME/infer`` body of about 9 MiB, decoded by ``mest.codecs.v2.decode_request``
in this process: the wall time of one untraced decode, and the peak memory ``tracemalloc`` saw during a
second (numpy reports its buffers to it), as a multiple of the body's size. Run it on two checkouts to compare
codecs (the argument is only a label for the table). The baseline, measured in the same run, is a
binary-extension tensor of the same size. The cases are the issue's: empty rows with shape ``[k, 0]``, 2.6
million rows against a smaller shape (a 400), and INT64 values written as ``1.0``; then the other shapes of
numeric data: the shortest integers, float32 values as Python writes them (``json.dumps``, as tritonclient
sends them), ``NaN`` tokens, long rows, and short rows of four numbers (which stay on orjson's path).

    python bench/v2_json_cost.py            # this tree
    PYTHONPATH=OTHER/src python bench/v2_json_cost.py OTHER   # another checkout's codec, for before/after
"""

from __future__ import annotations

import gc
import json
import sys
import time
import timeit
import tracemalloc

import numpy as np
import orjson

from mest.codecs.v2 import decode_request
from mest.errors import BadRequest

TARGET = 9 * 1024 * 1024


def _doc(datatype: str, shape: list[int], data: object) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]})


def cases() -> list[tuple[str, bytes, dict[str, str] | None]]:
    rows = TARGET // 3  # "[],"
    empty = _doc("FP32", [rows, 0], [[]] * rows)
    many = TARGET // 5  # "[1],"
    mismatch = _doc("FP32", [1000, 1], [[1]] * many)
    ints = TARGET // 4  # "1.0,"
    as_floats = _doc("INT64", [ints], [1.0] * ints)
    digits = TARGET // 2  # "1,"
    short_ints = _doc("INT8", [digits], [1] * digits)
    reprs = np.random.default_rng(0).standard_normal(TARGET // 21).astype(np.float32).tolist()  # "-0.123..., "
    tritonclient = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(reprs)], "data": reprs}]}
    ).encode()
    nans = TARGET // 4  # "NaN,"
    nan_body = _doc("FP32", [nans], [float("nan")] * nans).replace(b"null", b"NaN")
    columns = TARGET // 4 // 8
    long_rows = _doc("FP32", [8, columns], [[1.0] * columns] * 8)
    row_count = TARGET // 18  # "[1.0,2.0,3.0,4.0],"
    short_rows = _doc("FP32", [row_count, 4], [[1.0, 2.0, 3.0, 4.0]] * row_count)
    binary = np.ones(TARGET // 4, dtype=np.float32).tobytes()
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [TARGET // 4],
                                       "parameters": {"binary_data_size": len(binary)}}]})
    return [
        ("baseline: binary FP32 tensor", header + binary, {"inference-header-content-length": str(len(header))}),
        ("empty rows, shape [k, 0]", empty, None),
        ("2.6 M rows against shape [1000, 1] (400)", mismatch, None),
        ("INT64 written as 1.0", as_floats, None),
        ("INT8 written as 1", short_ints, None),
        ("FP32 as json.dumps writes it (tritonclient)", tritonclient, None),
        ("FP32 NaN tokens", nan_body, None),
        ("FP32 rows, shape [8, k]", long_rows, None),
        ("FP32 rows, shape [k, 4]", short_rows, None),
    ]


def _decode(body: bytes, headers: dict[str, str] | None) -> str:
    try:
        if headers:
            decode_request(body, header_length=int(headers["inference-header-content-length"]))
        else:
            decode_request(body)
    except BadRequest as exc:
        return f"400: {str(exc)[:60]}"
    return "decoded"


def measure(body: bytes, headers: dict[str, str] | None) -> tuple[float, float, str]:
    """(peak memory / body size, seconds, outcome): timed untraced, then once more under tracemalloc."""
    gc.collect()
    started = time.perf_counter()
    outcome = _decode(body, headers)
    elapsed = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    _decode(body, headers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / len(body), elapsed, outcome


def speed_cases() -> list[tuple[str, bytes]]:
    """Bodies of everyday sizes: decode time, to show the small-request path is not slower."""
    small = _doc("FP32", [1, 4], [[5.1, 3.5, 1.4, 0.2]])
    out = [("iris row, [1, 4] (the hot path)", small)]
    for count in (4_000, 40_000):
        reprs = np.random.default_rng(0).standard_normal(count).astype(np.float32).tolist()
        out.append((f"{count} FP32 floats as json.dumps writes them", json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [count], "data": reprs}]}).encode()))
    return out


def decode_time(body: bytes) -> float:
    """Best of five: seconds per decode."""
    number = max(1, 200_000 // len(body))
    return min(timeit.repeat(lambda: decode_request(body), number=number, repeat=5)) / number


def main() -> None:
    print(f"`python bench/v2_json_cost.py` ({'codec of ' + sys.argv[1] if len(sys.argv) > 1 else 'this tree'})")
    print("| body | size MiB | peak memory / body size | time s | outcome |")
    print("| --- | --- | --- | --- | --- |")
    for name, body, headers in cases():
        ratio, elapsed, outcome = measure(body, headers)
        print(f"| {name} | {len(body) / 2**20:.1f} | {ratio:.1f} | {elapsed:.2f} | {outcome} |", flush=True)
    print()
    print("| body | size KiB | decode us |")
    print("| --- | --- | --- |")
    for name, body in speed_cases():
        print(f"| {name} | {len(body) / 1024:.1f} | {decode_time(body) * 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
