"""Mest's one-call metric updates (observability/_prometheus_fast.py) against prometheus_client's own methods.

They write prometheus_client's internals, so for the installed prometheus_client (supported: 0.20 and later)
each fast path must be taken (not its fallback to the public method) and must leave exactly the samples the
public methods leave, in one process and in multiprocess mode (a subprocess, since prometheus_client picks its
value class when imported).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = """
import math
{setup}
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from mest.observability._prometheus_fast import adder_of, observer_of, setter_of

registry = {registry}
kwargs = {{}} if registry is None else {{"registry": registry}}
pairs = []
for name in ("fast", "public"):
    pairs.append((
        Counter(name + "_c", "c", ["k"], **kwargs).labels("a"),
        Gauge(name + "_g", "g", ["k"], multiprocess_mode="max", **kwargs).labels("a"),
        Histogram(name + "_h", "h", ["k"], buckets=(0.1, 1, 10), **kwargs).labels("a"),
    ))
(fc, fg, fh), (pc, pg, ph) = pairs
inc, set_, observe = adder_of(fc), setter_of(fg), observer_of(fh)
assert inc != fc.inc and set_ != fg.set and observe != fh.observe, "a fast path fell back to the public method"
for value in (0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 11.0, 2.5):
    inc(value); pc.inc(value)
    set_(value); pg.set(value)
    observe(value); ph.observe(value)
{collect}
samples = {{}}
for family in collected.collect():
    for sample in family.samples:
        samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
fast = {{(n.replace("fast_", "", 1), l): v for (n, l), v in samples.items() if n.startswith("fast_")}}
public = {{(n.replace("public_", "", 1), l): v for (n, l), v in samples.items() if n.startswith("public_")}}
assert fast and fast.keys() == public.keys(), (fast, public)
for key in fast:
    assert math.isclose(fast[key], public[key]), (key, fast[key], public[key])
print("same", len(fast))
"""


def _run(setup: str, registry: str, collect: str) -> str:
    code = SCRIPT.format(setup=textwrap.dedent(setup), registry=registry, collect=textwrap.dedent(collect))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_fast_paths_match_the_public_methods_in_one_process() -> None:
    out = _run("", "CollectorRegistry()", "collected = registry")
    assert out.startswith("same ")


def test_fast_paths_match_the_public_methods_in_multiprocess_mode() -> None:
    out = _run(
        """
        import os, tempfile
        directory = tempfile.mkdtemp()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        """,
        "None",
        """
        from prometheus_client.multiprocess import MultiProcessCollector
        collected = CollectorRegistry()
        MultiProcessCollector(collected, directory)
        """,
    )
    assert out.startswith("same ")
