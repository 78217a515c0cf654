"""Plot one workload of a peer-benchmark results file: req/s, p50 and p99 against connections.

Run by run.py in the ``plot`` venv (matplotlib): ``python plot.py results.json W1 out.png``.
"""

import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(results_path: str, workload: str, out: str) -> None:
    with open(results_path) as fh:
        results = json.load(fh)
    rows = [s for s in results["summary"] if s["workload"] == workload]
    servers = [name for name in results["servers"] if any(s["server"] == name for s in rows)]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    panels = [
        ("rps", "requests / s", False),
        ("p50_ms", "p50 latency (ms)", True),
        ("p99_ms", "p99 latency (ms)", True),
    ]
    for i, name in enumerate(servers):
        points = sorted((s["connections"], s) for s in rows if s["server"] == name)
        xs = [c for c, _ in points]
        style = "-" if name.startswith("mest") else ("--" if name.startswith("falcon") else ":")
        width = 2.4 if name.startswith("mest") else 1.5
        for ax, (key, _, _) in zip(axes, panels, strict=True):
            ax.plot(
                xs,
                [s[key] for _, s in points],
                style,
                marker="o",
                linewidth=width,
                label=name,
                color=plt.cm.tab10(i % 10),
            )
    for ax, (_, ylabel, log) in zip(axes, panels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(results["connections"], [str(c) for c in results["connections"]])
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    label = results.get("label") or ""
    title = f"{workload}: {results['started']}, median of {results['repeats']} x {results['duration_s']:g} s per point"
    if label:
        title += "\n" + textwrap.shorten(label, 160)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])
