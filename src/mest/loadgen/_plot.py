"""``mest bench --plot``: one PNG with the latency distribution per concurrency and throughput vs concurrency.

matplotlib is an optional dependency (``pip install 'mest[bench]'``); it is imported only here, and only when a
plot is asked for. The figure is drawn with matplotlib's object API on the Agg canvas, so no GUI backend and no
pyplot global state are involved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._engine import LoadResult

__all__ = ["INSTALL_HINT", "matplotlib_missing", "write_plot"]

INSTALL_HINT = "--plot needs matplotlib: pip install 'mest[bench]'"


def matplotlib_missing() -> bool:
    """True when matplotlib cannot be imported (checked before a benchmark starts, not after it ran)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def _by_percentile(ax: Any, results: Sequence[LoadResult]) -> None:
    """Latency against percentile on a "nines" axis (HdrHistogram's plot): the tail gets as much room as the median."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    top = 1.0
    for result in results:
        data = np.sort(np.asarray(result.latencies_ms))
        if not data.size:
            continue
        nines = -np.log10(1.0 - np.arange(data.size) / data.size)  # 0 at the fastest, 2 at p99, 3 at p99.9
        if data.size > 4000:  # plenty for a line: keep points evenly spaced along the nines axis
            keep = np.unique(np.searchsorted(nines, np.linspace(0.0, nines[-1], 4000)))
            nines, data = nines[keep], data[keep]
        ax.plot(nines, data, label=str(result.concurrency))
        top = max(top, float(nines[-1]))
    ticks = [math.log10(2), *range(1, math.ceil(top) + 1)]  # p50, p90, p99, p99.9, ...
    ax.set_xticks(ticks, ["50%", *(f"{100 - 10.0 ** (2 - t):g}%" for t in ticks[1:])])
    ax.set_xlim(left=0)  # the fastest request
    ax.grid(True, axis="x", color="0.9")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", axis="y", color="0.9")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title("Latency by percentile")
    ax.legend(title="concurrency", fontsize="small", loc="best")


def _throughput(ax: Any, results: Sequence[LoadResult]) -> None:
    levels = [r.concurrency for r in results]
    ax.plot(levels, [r.rps for r in results], "o-", color="tab:blue", label="requests/s")
    ax.set_xlabel("concurrency (connections, log scale)")
    ax.set_ylabel("requests/s", color="tab:blue")
    ax.set_ylim(bottom=0)
    if len(set(levels)) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(level) for level in levels])
    ax.set_title("Throughput and latency vs concurrency")
    latency = ax.twinx()
    for q, style in ((50, "s--"), (99, "^:")):
        values = [r.percentile(q) for r in results]
        latency.plot(levels, [math.nan if math.isnan(v) else v for v in values], style, color="tab:red",
                     label=f"p{q} latency")
    latency.set_ylabel("latency, ms", color="tab:red")
    latency.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = latency.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3,
              fontsize="small", frameon=False)


def write_plot(results: Sequence[LoadResult], path: str, title: str) -> None:
    """Draw ``results`` (one per concurrency) and save the figure as a PNG at ``path``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    _by_percentile(left, results)
    _throughput(right, results)
    figure.suptitle(title, fontsize="medium")
    figure.savefig(path, format="png", dpi=100)
