"""Batching benchmark: W1 (iris) and W2 (sentence embeddings), unbatched vs batched, 1 and 64 clients.

Every number comes from real gunicorn on loopback: the server pinned to one core (``taskset -c 0``), the
load generator (``bench/loadgen.py``, closed loop, warm-up excluded) pinned to the other (``taskset -c 1``).
For W2 the model-only ceiling (``bench/ceiling.py``: ``infer`` alone, replaying the batch sizes the batched
server formed at 64 clients) is measured in the same run, on the server's core, with the server stopped.

Run from the repository root with the bench venv (README.md beside this file)::

    bench/.venvs/bench/bin/python bench/batching.py --write-docs

Results go to stdout and ``bench/results/batching-<time>.json``; ``--write-docs`` also rewrites the results
section of ``docs/benchmarks.md`` (between its ``<!-- bench:batching -->`` markers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"
RESULTS = BENCH / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
_LISTEN = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
_MARK_BEGIN, _MARK_END = "<!-- bench:batching:begin -->", "<!-- bench:batching:end -->"

WORDS = (  # noqa: SIM905 (a sentence reads better than a list of quoted words)
    "the a quick brown fox jumps over lazy dog while seven wizards quietly box jumping zebras model server "
    "batch request latency throughput core thread queue answer river mountain city music coffee morning "
    "evening winter summer bright dark small large ancient modern simple complex green blue red yellow"
).split()


def w1_bodies(n: int = 512) -> list[str]:
    rng = random.Random(1)
    return [
        json.dumps(
            {
                "features": [
                    round(rng.uniform(4, 8), 1),
                    round(rng.uniform(2, 4.5), 1),
                    round(rng.uniform(1, 7), 1),
                    round(rng.uniform(0.1, 2.5), 1),
                ]
            }
        )
        for _ in range(n)
    ]


def w2_bodies(n: int = 512) -> list[str]:
    rng = random.Random(2)
    return [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 10)))}) for _ in range(n)]


WORKLOADS: dict[str, dict[str, Any]] = {
    "W1": {"app": "w1_iris:app", "path": "/api/v1/predict", "bodies": w1_bodies, "max_batch": 64},
    "W2": {"app": "w2_embed:app", "path": "/embed", "bodies": w2_bodies, "max_batch": 64},
}


@contextlib.contextmanager
def server(app: str, *, core: str, worker: str, env: dict[str, str], threads: int) -> Iterator[tuple[str, int]]:
    """Run gunicorn (one worker) pinned to ``core``; yield its URL and the master's PID; stop it by PID."""
    argv = [
        "taskset",
        "-c",
        core,
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        worker,
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--chdir",
        str(APPS),
        "--timeout",
        "120",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
    ]
    if worker == "gthread":
        argv += ["--threads", str(threads)]
    argv += ["--log-level", "info", app]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 120
        url = ""
        while not url:
            found = _LISTEN.search("".join(lines))
            if found:
                url = f"http://127.0.0.1:{found.group(1)}"
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start:\n" + "".join(lines))
            else:
                time.sleep(0.05)
        while True:  # /health/ready runs the predictor's setup (model load) before we measure
            try:
                with urllib.request.urlopen(url + "/health/ready", timeout=60) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn never became ready:\n" + "".join(lines)) from None
                time.sleep(0.2)
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    url: str, bodies_file: Path, *, core: str, clients: int, duration: float, warmup: float, worker: int
) -> dict[str, Any]:
    """One closed-loop point; also the server worker's CPU seconds during the measured window.

    The CPU time makes results comparable on a machine shared with other work: a core the server is pinned
    to can still be lent to other processes, which lowers req/s but not requests per CPU-second.
    """
    argv = [
        "taskset", "-c", core, sys.executable, str(BENCH / "loadgen.py"), url, "--bodies-file", str(bodies_file),
        "-c", str(clients), "-d", str(duration), "-w", str(warmup),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        time.sleep(max(0.0, warmup - (time.monotonic() - started)))
        cpu0 = cpu_seconds(worker)
        time.sleep(duration)
        cpu1 = cpu_seconds(worker)
        out, err = proc.communicate(timeout=duration + warmup + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{err}")
    summary: dict[str, Any] = json.loads(out)
    cpu = cpu1 - cpu0
    summary["server_cpu_s"] = round(cpu, 3)
    summary["server_cpu_util"] = round(cpu / duration, 3)
    summary["rps_per_cpu_s"] = round(summary["requests"] / cpu, 1) if cpu > 0 else None
    return summary


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def start_profile(master: int, name: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], Path]:
    """py-spy (sampling, from the bench venv) on the worker for the measured part of one point."""
    out = RESULTS / f"profile-{name}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    py_spy = Path(sys.executable).with_name("py-spy")
    argv = [
        str(py_spy),
        "record",
        "--pid",
        str(worker_pid(master)),
        "--format",
        "raw",
        "--output",
        str(out),
        "--duration",
        str(int(args.warmup + args.duration)),
        "--rate",
        "200",
        "--idle",
        "--nonblocking",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, out


def finish_profile(profiler: tuple[subprocess.Popen[str], Path], name: str) -> dict[str, Any]:
    """Where the worker's samples went: model, idle (waiting for requests), everything else."""
    proc, out = profiler
    proc.wait(120)
    buckets: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if "encode (sentence_transformers" in stack or "predict_proba" in stack:
            buckets["model (infer)"] += n
        elif stack.endswith("run (gevent/libev/corecext.pyx)") or "poll (selectors" in stack:
            buckets["idle (event loop waiting)"] += n
        elif "json" in stack.lower() and ("dumps" in stack or "loads" in stack):
            buckets["JSON"] += n
        else:
            buckets["HTTP, Mest pipeline, other"] += n
    total = sum(buckets.values()) or 1
    shares = {k: round(100.0 * v / total, 1) for k, v in buckets.most_common()}
    print(f"{name} profile of the batched worker (% of samples): {shares}  ({out})", flush=True)
    return {"samples": total, "percent": shares, "raw": str(out.relative_to(ROOT))}


def batch_log(url: str, window: list[float]) -> tuple[list[int], float]:
    """The batch sizes formed in the window, and the seconds the worker spent inside the model."""
    req = urllib.request.Request(url + "/bench/stats", data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        stats = json.load(resp)
    entries = [(size, seconds) for t, size, seconds in stats["batches"] if window[0] <= t <= window[1]]
    return [size for size, _ in entries], sum(seconds for _, seconds in entries)


def describe_sizes(sizes: list[int]) -> dict[str, Any]:
    if not sizes:
        return {"batches": 0}
    ordered = sorted(sizes)
    common = Counter(sizes).most_common(5)
    return {
        "batches": len(sizes),
        "mean": round(sum(sizes) / len(sizes), 2),
        "p50": ordered[len(ordered) // 2],
        "max": ordered[-1],
        "most_common": common,
    }


def ceiling(sizes: list[int], bodies_file: Path, *, core: str, duration: float, repeat: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(sizes, f)
    try:
        argv = [
            "taskset", "-c", core, sys.executable, str(BENCH / "ceiling.py"), "--sizes", f.name,
            "--bodies-file", str(bodies_file), "--duration", str(duration), "--repeat", str(repeat),
        ]  # fmt: skip
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(f.name)


IRIS_MODEL = ROOT / "examples" / "iris" / "models" / "logistic_regression.pkl"


def run_workload(name: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = WORKLOADS[name]
    if name == "W1" and not IRIS_MODEL.exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "iris" / "train.py")], check=True, timeout=300)
    bodies_file = RESULTS / f"{name.lower()}-bodies.jsonl"
    bodies_file.write_text("\n".join(spec["bodies"]()) + "\n")
    result: dict[str, Any] = {"runs": []}
    for mode, max_batch in (("unbatched", 1), ("batched", args.max_batch.get(name, spec["max_batch"]))):
        if mode not in args.modes:
            continue
        env = {"BENCH_MAX_BATCH": str(max_batch), "BENCH_DELAY_MS": str(args.delay_ms)}
        with server(spec["app"], core=args.server_core, worker=args.worker, env=env, threads=args.threads) as (
            url,
            master,
        ):
            for clients in args.clients:
                profiler = None
                if args.profile and clients == max(args.clients):
                    profiler = start_profile(master, f"{name}-{mode}", args)
                reps = [
                    load(
                        url + spec["path"],
                        bodies_file,
                        core=args.client_core,
                        clients=clients,
                        duration=args.duration,
                        warmup=args.warmup if rep == 0 else min(args.warmup, 1.0),
                        worker=worker_pid(master),
                    )
                    for rep in range(args.repeat)
                ]
                # The least disturbed window: the one in which the server got the largest share of its core.
                summary = max(reps, key=lambda r: r["server_cpu_util"])
                summary["repetitions"] = [
                    {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "server_cpu_util", "rps_per_cpu_s")} for r in reps
                ]
                if profiler is not None:
                    result.setdefault("profile", {})[mode] = finish_profile(profiler, f"{name} {mode}")
                sizes, model_s = batch_log(url, summary["window"])
                summary["in_model_share"] = round(model_s / args.duration, 3)
                summary["in_model_ms_per_item"] = round(1000 * model_s / sum(sizes), 3) if sizes else None
                run = {"mode": mode, "max_batch_size": max_batch, **summary, "batch_sizes": describe_sizes(sizes)}
                if name == "W2" and mode == "batched" and clients == max(args.clients):
                    run["_sizes"] = sizes
                result["runs"].append(run)
                print(
                    f"{name} {mode:9} c={clients:<3} {summary['rps']:8.1f} req/s  p50 {summary['p50_ms']:8.2f} ms"
                    f"  p99 {summary['p99_ms']:8.2f} ms  errors {summary['errors']}  batches "
                    f"{run['batch_sizes']}",
                    flush=True,
                )
    if name == "W2" and not args.no_ceiling:
        batched = [r for r in result["runs"] if r.get("_sizes")]
        if batched:
            sizes = batched[0].pop("_sizes")
            result["ceiling"] = ceiling(
                sizes, bodies_file, core=args.server_core, duration=args.duration, repeat=args.repeat
            )
            print(f"{name} model-only ceiling at the formed batch sizes: {result['ceiling']}", flush=True)
    for run in result["runs"]:
        run.pop("_sizes", None)
    return result


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def verdict(w2: dict[str, Any], clients: list[int]) -> dict[str, Any]:
    """The issue's W2 targets, on wall-clock numbers and on per-CPU-second numbers."""
    runs = {(r["mode"], r["concurrency"]): r for r in w2["runs"]}
    hi, lo = max(clients), min(clients)
    out: dict[str, Any] = {}
    b_hi, u_hi = runs.get(("batched", hi)), runs.get(("unbatched", hi))
    ceiling = w2.get("ceiling")
    if b_hi and ceiling:
        out["batched_vs_ceiling (>= 0.85)"] = _ratio(b_hi["rps"], ceiling["items_per_s"], 3)
        out["batched_vs_ceiling per CPU-s"] = _ratio(b_hi["rps_per_cpu_s"], ceiling["items_per_cpu_s"], 3)
    if b_hi:
        # The same ratio against the model's speed measured inside the server during the same window
        # (req/s over items per second of infer time = the share of the window spent in infer): immune to the
        # machine getting faster or slower between the server run and the separate ceiling run.
        out["batched_vs_in-window model-only ceiling"] = b_hi["in_model_share"]
    if b_hi and u_hi:
        out["batched_vs_unbatched (>= 3.3)"] = _ratio(b_hi["rps"], u_hi["rps"])
        out["batched_vs_unbatched per CPU-s"] = _ratio(b_hi["rps_per_cpu_s"], u_hi["rps_per_cpu_s"])
        out["p99 batched / unbatched (<= 1)"] = _ratio(b_hi["p99_ms"], u_hi["p99_ms"], 3)
    if ceiling and "curve" in ceiling:
        curve = ceiling["curve"]
        if "1" in curve and "64" in curve:
            out["model-only speed-up, batch 64 vs 1 (CPU)"] = _ratio(
                curve["1"]["ms_per_item_cpu"], curve["64"]["ms_per_item_cpu"]
            )
    b_lo, u_lo = runs.get(("batched", lo)), runs.get(("unbatched", lo))
    if b_lo and u_lo:
        out[f"p50 batched / unbatched at {lo} client (<= 1.10)"] = _ratio(b_lo["p50_ms"], u_lo["p50_ms"], 3)
    return out


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"### Run of {report['started']}",
        "",
        f"{report['machine']}.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| workload | mode | clients | req/s | p50 ms | p99 ms | errors | oldest unanswered at end, ms "
        "| batch size mean / p50 / max | server CPU use | req per CPU-s | time in infer: share, ms per request |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, res in report["workloads"].items():
        for r in res["runs"]:
            b = r["batch_sizes"]
            bs = f"{b.get('mean', '-')} / {b.get('p50', '-')} / {b.get('max', '-')}" if b.get("batches") else "-"
            errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
            lines.append(
                f"| {name} | {r['mode']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {errors} | {r['oldest_unfinished_ms']:.0f} |"
                f" {bs} | {100 * r['server_cpu_util']:.0f}% | {r['rps_per_cpu_s']} |"
                f" {100 * r['in_model_share']:.0f}%, {r['in_model_ms_per_item']} |"
            )
    w2 = report["workloads"].get("W2", {})
    if "ceiling" in w2:
        c = w2["ceiling"]
        curve = ", ".join(f"{size}: {v['ms_per_item_cpu']} ms" for size, v in c.get("curve", {}).items())
        lines += [
            "",
            f"W2 model-only ceiling (`infer` alone replaying the batch sizes formed at the most clients, mean "
            f"{c['mean_batch']}): {c['items_per_s']:.1f} items/s, {c['items_per_cpu_s']:.1f} items per CPU-s. "
            f"Model-only CPU ms per sentence by batch size: {curve}.",
        ]
    for mode, profile in w2.get("profile", {}).items():
        shares = ", ".join(f"{k} {v}%" for k, v in profile["percent"].items())
        lines += ["", f"W2 {mode} worker profile at the most clients (py-spy, share of samples): {shares}."]
    if report.get("verdict"):
        lines += ["", "W2 targets:", ""]
        lines += [f"- {k}: {v}" for k, v in report["verdict"].items()]
    return "\n".join(lines) + "\n"


def write_docs(markdown: str, *, append: bool) -> None:
    """Put the run's table between the markers of docs/benchmarks.md, replacing what is there or after it."""
    text = DOCS.read_text() if DOCS.exists() else ""
    if _MARK_BEGIN in text and _MARK_END in text:
        head, rest = text.split(_MARK_BEGIN, 1)
        old, tail = rest.split(_MARK_END, 1)
        keep = old.strip("\n") + "\n\n" if append and "| workload |" in old else ""
        text = f"{head}{_MARK_BEGIN}\n{keep}{markdown}{_MARK_END}{tail}"
    else:
        text = f"{text}{chr(10) if text else ''}{_MARK_BEGIN}\n{markdown}{_MARK_END}\n"
    DOCS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["W1", "W2"], choices=sorted(WORKLOADS))
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per window")
    parser.add_argument(
        "--repeat", type=int, default=3, help="windows per point; the one where the server got most CPU is kept"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each point")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="max_batch_delay_ms of the batched runs")
    parser.add_argument("--worker", default="gevent", choices=["gevent", "gthread"])
    parser.add_argument("--threads", type=int, default=128, help="gthread threads")
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    parser.add_argument(
        "--max-batch",
        nargs="*",
        default=[],
        metavar="W=N",
        help="max_batch_size of a workload's batched runs (default: W1=64 W2=64)",
    )
    parser.add_argument("--modes", nargs="+", default=["unbatched", "batched"], choices=["unbatched", "batched"])
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker at the most clients")
    parser.add_argument("--write-docs", action="store_true", help="replace the results in docs/benchmarks.md")
    parser.add_argument("--append-docs", action="store_true", help="add this run to the results there")
    args = parser.parse_args()
    args.max_batch = {k: int(v) for k, v in (item.split("=", 1) for item in args.max_batch)}
    RESULTS.mkdir(exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    command = "bench/.venvs/bench/bin/python bench/batching.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report: dict[str, Any] = {
        "started": started,
        "command": command.strip(),
        "machine": f"{os.cpu_count()} cores, gunicorn -k {args.worker} -w 1, server on core {args.server_core}, "
        f"load generator on core {args.client_core}",
        "workloads": {},
    }
    for name in args.workloads:
        report["workloads"][name] = run_workload(name, args)
    if "W2" in report["workloads"]:
        report["verdict"] = verdict(report["workloads"]["W2"], args.clients)
        print("W2 verdict:", report["verdict"], flush=True)
    out = RESULTS / f"batching-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    markdown = render_markdown(report)
    print(markdown)
    print(f"wrote {out}")
    if args.write_docs or args.append_docs:
        write_docs(markdown, append=args.append_docs)
        print(f"updated {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
