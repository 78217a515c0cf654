"""``mest bench`` and its engine, ``mest.loadgen``, against real servers on loopback.

The servers are gunicorn running ``hello_wsgi:app`` (a trivial WSGI app with a few test routes) and the Mest
app ``basic_app:app``, plus the standard library's HTTP/1.0 server for responses framed by closing the
connection. Runs are short (well under a second each) and nothing asserts a timing: only that the numbers are
consistent (requests > 0, p50 <= p90 <= p99 <= max) and that errors are counted by what went wrong.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mest.cli import main
from mest.loadgen import LoadError, LoadResult, Progress, run_load
from support.servers import RunningServer, gunicorn

SHORT = ["--duration", "400ms", "--warmup", "100ms"]
COLUMNS = ["CONCURRENCY", "REQUESTS", "REQ/S", "P50_MS", "P90_MS", "P99_MS", "MAX_MS", "CLIENT_CPU", "ERRORS"]


def bench(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def table(out: str) -> list[dict[str, str]]:
    """The rows of the printed table, by column name (ERRORS: the rest of the line)."""
    lines = out.strip().splitlines()
    assert lines[0].split() == COLUMNS
    rows = []
    for line in lines[1:]:
        cells = line.split(None, len(COLUMNS) - 1)
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def assert_sane(row: dict[str, str]) -> None:
    assert int(row["REQUESTS"]) > 0
    assert float(row["REQ/S"]) > 0
    latencies = [float(row[c]) for c in ("P50_MS", "P90_MS", "P99_MS", "MAX_MS")]
    assert 0 < latencies[0] <= latencies[1] <= latencies[2] <= latencies[3]


@pytest.fixture(scope="module")
def hello() -> Iterator[RunningServer]:
    """A trivial app on gunicorn's gthread worker (keep-alive connections)."""
    with gunicorn("hello_wsgi:app", worker_class="gthread", threads=8) as server:
        yield server


@pytest.fixture(scope="module")
def mest_sync() -> Iterator[RunningServer]:
    """A Mest app on gunicorn's sync worker, which closes the connection after every response."""
    with gunicorn("basic_app:app", worker_class="sync") as server:
        yield server


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- the command line, no server -----------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    code, out, _ = bench(flag)
    assert code == 0
    assert out.startswith("Usage: ") and "bench [OPTIONS] URL" in out
    for option in ("--body", "--json", "--header", "--method", "--concurrency", "--duration", "--warmup",
                   "--timeout", "--json-output", "--plot", "--progress"):
        assert option in out
    assert "mest bench URL" in CliRunner().invoke(main, ["--help"]).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "ten"], "is not a duration"),
        (["--duration", "0"], "must be more than 0"),
        (["--warmup", "5 parsecs"], "is not a duration"),
        (["--concurrency", "0,8"], "is not a list of positive integers"),
        (["--concurrency", "a"], "is not a list of positive integers"),
        (["-H", "NoColon"], "is not 'Name: value'"),
        (["--json", "{not json"], "not valid JSON"),
        (["--json", "{}", "--body", "-"], "not both"),
        (["--method", "BREW"], "BREW"),
    ],
)
def test_invalid_flags_exit_2(args: list[str], message: str, refused_port: int) -> None:
    code, _, err = bench(f"http://127.0.0.1:{refused_port}/", *args)
    assert code == 2
    assert message in err


def test_unreachable_server_exits_1_with_a_message(refused_port: int) -> None:
    code, out, err = bench(f"http://127.0.0.1:{refused_port}/", *SHORT)
    assert code == 1
    assert out == ""
    assert f"cannot connect to 127.0.0.1:{refused_port}" in err
    assert "Is the server running" in err


def test_https_is_refused_with_a_message() -> None:
    code, _, err = bench("https://127.0.0.1:1/", *SHORT)
    assert code == 1
    assert "only http:// URLs are supported" in err


def test_plot_without_matplotlib_gives_the_install_hint_before_running(tmp_path: Path) -> None:
    # A fresh interpreter where `import matplotlib` fails, as when the extra is not installed. Port 1 is
    # never contacted: the hint comes before the benchmark.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from mest.cli import main\n"
        f"main(['bench', 'http://127.0.0.1:1/', '--plot', {str(tmp_path / 'x.png')!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "pip install 'mest[bench]'" in done.stderr
    assert "cannot connect" not in done.stderr
    assert not (tmp_path / "x.png").exists()


# -- against real servers ------------------------------------------------------------------------------


@pytest.mark.server
def test_table_has_a_row_per_concurrency_with_sane_numbers(hello: RunningServer) -> None:
    code, out, err = bench(hello.url + "/", "-c", "1,4", *SHORT, "--progress")
    assert code == 0, err
    rows = table(out)
    assert [row["CONCURRENCY"] for row in rows] == ["1", "4"]
    for row in rows:
        assert_sane(row)
        assert row["ERRORS"] == "0"
        assert row["CLIENT_CPU"].endswith("%")
    assert "\r" in err and "req/s" in err  # the live progress line
    assert "c=4    done" in err


@pytest.mark.server
def test_chunked_responses(hello: RunningServer) -> None:
    code, out, err = bench(hello.url + "/chunked", "-c", "2", *SHORT)
    assert code == 0, err
    (row,) = table(out)
    assert_sane(row)
    assert row["ERRORS"] == "0"


@pytest.mark.server
def test_every_request_failing_is_counted_by_status_and_exits_1(hello: RunningServer) -> None:
    code, out, err = bench(hello.url + "/no-such-page", "-c", "1,2", *SHORT)
    assert code == 1
    rows = table(out)
    assert len(rows) == 2
    for row in rows:
        assert row["REQUESTS"] == "0"
        assert row["P50_MS"] == row["MAX_MS"] == "-"
        count = int(row["ERRORS"].split()[0])
        assert count > 0
        assert row["ERRORS"] == f"{count} (404: {count})"
    assert "every request failed:" in err and "(404: " in err


@pytest.mark.server
def test_headers_are_sent_and_their_values_never_written(hello: RunningServer, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    code, out, err = bench(hello.url + "/auth", "-H", "X-API-Key: secret", "-c", "2", *SHORT,
                           "--json-output", str(report))
    assert code == 0, err
    assert table(out)[0]["ERRORS"] == "0"
    text = report.read_text()
    assert "secret" not in text
    assert json.loads(text)["header_names"] == ["X-API-Key"]

    code, out, _ = bench(hello.url + "/auth", "-c", "1", *SHORT)
    assert code == 1
    assert "(401: " in table(out)[0]["ERRORS"]


@pytest.mark.server
def test_a_request_past_the_timeout_is_an_error(hello: RunningServer) -> None:
    code, out, err = bench(hello.url + "/slow", "-c", "1", "--timeout", "100ms", "--duration", "350ms",
                           "--warmup", "0")
    assert code == 1
    (row,) = table(out)
    assert "client_timeout: " in row["ERRORS"]
    assert "every request failed" in err


@pytest.mark.server
def test_json_output_and_plot(hello: RunningServer, tmp_path: Path) -> None:
    report, png = tmp_path / "bench.json", tmp_path / "latency.png"
    code, out, err = bench(hello.url + "/", "-c", "1,2", *SHORT, "--json-output", str(report), "--plot", str(png))
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["url"] == hello.url + "/"
    assert data["method"] == "GET"
    assert data["duration_s"] == 0.4 and data["warmup_s"] == 0.1
    assert [r["concurrency"] for r in data["results"]] == [1, 2]
    for result, row in zip(data["results"], table(out), strict=True):
        assert result["requests"] == int(row["REQUESTS"]) > 0
        assert result["errors"] == {}
        assert result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["max_ms"]
        assert result["min_ms"] <= result["mean_ms"] <= result["max_ms"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert f"Plot written to {png}" in err


@pytest.mark.server
def test_a_mest_app_with_a_json_body(mest_sync: RunningServer, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    code, out, err = bench(mest_sync.url + "/sum", "--json", '{"features": [1, 2, 3]}', "-c", "1,3", *SHORT,
                           "--json-output", str(report))
    assert code == 0, err
    for row in table(out):
        assert_sane(row)
        assert row["ERRORS"] == "0"
    data = json.loads(report.read_text())
    assert data["method"] == "POST"
    assert data["header_names"] == ["Content-Type"]


@pytest.mark.server
def test_bodies_round_robin_and_a_400_counted_by_status(mest_sync: RunningServer, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"features": [1, 2]}')
    bad.write_text('{"id": "reject", "features": [1]}')  # basic_app answers 400
    code, out, err = bench(mest_sync.url + "/sum", "--body", str(good), "--body", str(bad), "-c", "2", *SHORT)
    assert code == 0, err  # some requests succeeded
    (row,) = table(out)
    assert_sane(row)
    failed = int(row["ERRORS"].split()[0])
    assert row["ERRORS"] == f"{failed} (400: {failed})"
    assert abs(failed - int(row["REQUESTS"])) <= 4  # alternate bodies: as many 400s as successes, give or take


# -- the engine ----------------------------------------------------------------------------------------


@pytest.mark.server
def test_run_load_checks_each_response_against_its_body(hello: RunningServer) -> None:
    bodies = [f'{{"n": {i}}}'.encode() for i in range(5)]

    def check(index: int, body: bytes) -> str | None:
        return None if body == bodies[index % len(bodies)] else "wrong_body"

    result = run_load(hello.url + "/echo", bodies, concurrency=3, duration_s=0.3, warmup_s=0.1, check=check)
    assert result.requests > 0
    assert result.errors == {}
    assert len(result.latencies_ms) == result.requests


@pytest.mark.server
def test_run_load_reports_progress_and_bench_compatible_summary(hello: RunningServer) -> None:
    seen: list[Progress] = []
    result = run_load(hello.url + "/", concurrency=2, duration_s=0.3, warmup_s=0.15, progress=seen.append,
                      progress_interval_s=0.05)
    assert isinstance(result, LoadResult)
    phases = [p.phase for p in seen]
    assert phases[0] == "warmup" and phases[-1] == "measure"
    assert phases == sorted(phases, key=["warmup", "measure"].index)
    assert seen[-1].elapsed_s == seen[-1].phase_s == 0.3
    assert seen[-1].requests == result.requests > 0
    summary = result.summary()
    # The keys bench/batching.py reads from bench/loadgen.py's output are all there.
    for key in ("concurrency", "duration_s", "requests", "rps", "p50_ms", "p99_ms", "mean_ms", "errors", "window",
                "unfinished", "oldest_unfinished_ms"):
        assert key in summary
    assert summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"] <= summary["max_ms"]  # type: ignore[operator]


def test_run_load_unreachable_raises_load_error(refused_port: int) -> None:
    with pytest.raises(LoadError, match="cannot connect"):
        run_load(f"http://127.0.0.1:{refused_port}/", concurrency=1, duration_s=0.1, warmup_s=0)


class _OldHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0, no Content-Length: the body ends when the server closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"framed by close")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the generator drops its connections when the run ends, mid-request for some: expected


@contextlib.contextmanager
def _http10_server() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _OldHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.server
def test_run_load_reads_http10_responses_framed_by_close() -> None:
    with _http10_server() as url:
        result = run_load(url, concurrency=2, duration_s=0.3, warmup_s=0,
                          check=lambda _, body: None if body == b"framed by close" else "wrong_body")
    assert result.requests > 0
    assert result.errors == {}
