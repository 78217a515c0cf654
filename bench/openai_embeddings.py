"""OpenAI ``/v1/embeddings`` throughput, Mest (batched) against LitServe's ``OpenAIEmbeddingSpec`` (batched),
on the same model (all-MiniLM-L6-v2, PyTorch CPU, one intra-op thread) and the same limits (32 inputs per
batch, 5 ms window).

Mest: gunicorn ``-k gevent -w 1`` (this repository's .venv, with the ``openai-example`` extra). LitServe: its
defaults (one inference worker behind one uvicorn API process), from ``bench/.venvs/peers/litserve`` (made by
``python bench/peers/setup_envs.py --workloads W1,W2 --envs litserve``). Load: ``mest bench``, closed-loop
clients each sending one sentence per request (64 sentences round-robin), 1 and 32 connections, 8 s per point
after a 3 s warm-up. Usage::

    python bench/openai_embeddings.py [--write-docs]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "apps"
LITSERVE_PYTHON = ROOT / "bench" / ".venvs" / "peers" / "litserve" / "bin" / "python"
LISTEN = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
BEGIN, END = "<!-- bench:openai-embeddings:begin -->", "<!-- bench:openai-embeddings:end -->"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORDS = "the quick brown fox jumps over a lazy dog while seven bright stars shine above quiet hills".split()  # noqa: SIM905


def sentences(count: int = 64) -> list[str]:
    return [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(5 + i % 6)) for i in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], body: bytes) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30).is_success:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} never answered")


@contextlib.contextmanager
def server(kind: str, body: bytes) -> Iterator[str]:
    if kind == "mest":
        port = free_port()
        argv = [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}",
                "openai_embed:mest_app"]
        env = ENV
    else:
        port = free_port()
        argv = [str(LITSERVE_PYTHON), "openai_embed.py", "litserve"]
        env = {**ENV, "BENCH_PORT": str(port)}
    proc = subprocess.Popen(argv, cwd=APPS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    try:
        wait_until_serving(url, proc, body)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


def load(url: str, folder: Path) -> list[dict[str, object]]:
    bodies = []
    for i, text in enumerate(sentences()):
        path = folder / f"b{i}.json"
        path.write_text(json.dumps({"model": "all-minilm-l6-v2", "input": text, "encoding_format": "float"}))
        bodies += ["--body", str(path)]
    out = folder / "result.json"
    subprocess.run([sys.executable, "-m", "mest", "bench", url, *bodies, "-c", "1,32", "-d", "8s", "-w", "3s",
                    "--json-output", str(out), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["results"]  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    probe = json.dumps({"model": "all-minilm-l6-v2", "input": "warm up"}).encode()
    results: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("mest", "litserve"):
            with server(kind, probe) as url:
                results[kind] = load(url, Path(tmp))
    rows = ["| server | connections | req/s (= sentences/s) | p50 ms | p99 ms | errors |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]
    for kind, points in results.items():
        name = "Mest (gunicorn gevent, batched)" if kind == "mest" else "LitServe OpenAIEmbeddingSpec (batched)"
        rows += [f"| {name} | {p['concurrency']} | {p['rps']} | {p['p50_ms']} | {p['p99_ms']} | "
                 f"{sum(p['errors'].values()) if p['errors'] else 0} |" for p in points]  # type: ignore[union-attr]
    ratios = ", ".join(
        f"{m['concurrency']} connections x{float(m['rps']) / float(ls['rps']):.2f}"  # type: ignore[arg-type]
        for m, ls in zip(results["mest"], results["litserve"], strict=True)
    )
    text = "\n".join([
        f"### Run of {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
        "Command: `.venv/bin/python bench/openai_embeddings.py --write-docs` (2 shared cores, no pinning)", "",
        *rows, "", f"Mest req/s against LitServe's in the same run: {ratios}.",
    ])
    print(text)
    if args.write_docs:
        docs = ROOT / "docs" / "benchmarks.md"
        current = docs.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in current:
            current = current[: current.index(BEGIN)] + block + current[current.index(END) + len(END):]
        else:
            heading = "\n\n## OpenAI embeddings against LitServe (`bench/openai_embeddings.py`)\n\n"
            current = current.rstrip("\n") + heading + (__doc__ or "").split("\n\n")[0].replace("\n", " ") + (
                "\n\n" + block + "\n"
            )
        docs.write_text(current)


if __name__ == "__main__":
    main()
