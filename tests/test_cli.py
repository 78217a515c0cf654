"""The ``mest`` command: ``--help`` everywhere, ``routes``, ``check`` and real ``mest serve`` processes.

In-process runs use click's ``CliRunner`` on apps whose import does not depend on the environment; every
case that needs a fresh interpreter (other environment variables, an app that fails to import, a server) runs
``python -m mest`` (or the installed ``mest`` script) as a subprocess with a bounded timeout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mest.cli import main
from support.mest_serve import children, mest_argv, running, wait_for
from support.servers import APPS_DIR

TIMEOUT_S = 120


@pytest.fixture
def in_apps(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run from tests/apps with it on sys.path (restored afterwards), as a user runs `mest` from their project."""
    monkeypatch.chdir(APPS_DIR)
    monkeypatch.syspath_prepend(str(APPS_DIR))
    yield


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def mest(*args: str, env: dict[str, str] | None = None, cwd: Path = APPS_DIR) -> subprocess.CompletedProcess[str]:
    """``python -m mest ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mest", *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )


# -- the command itself ---------------------------------------------------------------------------------


def test_console_script_is_declared() -> None:
    (entry,) = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == "mest"]
    assert entry.value == "mest.cli:main"
    assert entry.load() is main


@pytest.mark.parametrize("command", [[], ["serve"], ["routes"], ["check"]])
def test_help_everywhere(command: list[str]) -> None:
    for flag in ("--help", "-h"):
        code, out, _ = invoke(*command, flag)
        assert code == 0
        assert out.startswith("Usage: ")


def test_serve_help_documents_every_variable() -> None:
    _, out, _ = invoke("serve", "--help")
    flat = " ".join(out.split())
    for flag, variable in [
        ("--host", "MEST_HOST"), ("--port", "MEST_PORT"), ("--workers", "MEST_WORKERS"),
        ("--worker-class", "MEST_WORKER_CLASS"), ("--timeout", "MEST_TIMEOUT"),
        ("--graceful-timeout", "MEST_GRACEFUL_TIMEOUT"), ("--max-body-size", "MEST_MAX_BODY_SIZE"),
        ("--reload", "MEST_RELOAD"), ("--log-format", "MEST_LOG_FORMAT"),
        ("--limit-request-line", "MEST_LIMIT_REQUEST_LINE"),
        ("--limit-request-field-size", "MEST_LIMIT_REQUEST_FIELD_SIZE"),
        ("--limit-request-fields", "MEST_LIMIT_REQUEST_FIELDS"),
    ]:
        assert flag in flat and f"env var: {variable}" in flat, flag


def test_every_serve_variable_is_documented() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    serve = main.commands["serve"]
    for param in serve.params:
        assert param.envvar and f"`{param.envvar}`" in text, f"{param.name} is missing from docs/cli.md"


def test_python_dash_m_mest_and_version() -> None:
    result = mest("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"mest, version \S+\n", result.stdout)


# -- mest routes ------------------------------------------------------------------------------------------


def test_routes_table(in_apps: None) -> None:
    code, out, _ = invoke("routes", "cli_app:app")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["METHOD", "PATH", "MODEL", "VERSION", "BATCH", "DELAY_MS", "QUEUE", "TIMEOUT_S"]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[1:]}
    assert rows[("POST", "/double")] == ["doubler", "2", "8", "2.5", "64", "5"]
    assert rows[("POST", "/shout")] == ["shout", "-", "1", "5.0", "-", "-"]
    assert rows[("GET", "/health/live")] == ["-"] * 6


def test_routes_json_lists_every_route_with_its_model(in_apps: None) -> None:
    code, out, _ = invoke("routes", "--json", "cli_app:app")
    assert code == 0
    description = json.loads(out)
    by_path = {(r["method"], r["path"]): r for r in description["routes"]}
    assert by_path[("POST", "/double")]["model"] == {
        "name": "doubler", "version": "2", "route": "/double", "max_batch_size": 8,
        "max_batch_delay_ms": 2.5, "max_queue": 64, "timeout_s": 5,
    }
    assert "model" not in by_path[("GET", "/health/ready")]
    # The app's protocol endpoints are attributed to the model they serve.
    v2 = [r for r in description["routes"] if r["path"].startswith("/v2/models/doubler")]
    assert v2 and all(r["model"]["name"] == "doubler" for r in v2)
    assert description["settings"] == {"max_body_size": 10 * 1024 * 1024, "auth": False, "cors": []}


def test_routes_does_not_start_the_app_run_at_the_end_of_the_module() -> None:
    # cli_app.py ends with an unguarded app.run(): a blocking dev server would make this time out.
    result = mest("routes", "cli_app:app")
    assert result.returncode == 0, result.stderr
    assert "POST" in result.stdout and "development server" not in result.stderr


def test_routes_reads_app_settings_from_the_environment() -> None:
    result = mest("routes", "--json", "cli_app:app", env={"MEST_API_KEYS": "k1", "MEST_MAX_BODY_SIZE": "2048"})
    assert result.returncode == 0, result.stderr
    description = json.loads(result.stdout)
    assert description["settings"]["max_body_size"] == 2048
    assert description["settings"]["auth"] is True
    public = {r["path"] for r in description["routes"] if r["public"]}
    assert public == {"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:app", "Cannot import 'no_such_module'"),
        ("cli_app:missing", "has no attribute 'missing'. It defines: app"),
        ("cli_app:Doubler", "is a type, not a Mest app"),
        ("cli_app:", "ends with ':'"),
        ("not a spec", "is not MODULE:APP"),
        ("missing/file.py", "no such file"),
    ],
)
def test_bad_app_specs_fail_with_a_clear_message(in_apps: None, spec: str, message: str) -> None:
    code, _, err = invoke("routes", spec)
    assert code == 1
    assert message in err
    assert "Traceback" not in err


def test_app_given_as_a_file_path(tmp_path: Path) -> None:
    result = mest("routes", str(APPS_DIR / "cli_app.py"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "/double" in result.stdout


# -- mest check -------------------------------------------------------------------------------------------


def test_check_runs_setup_and_every_example(in_apps: None) -> None:
    code, out, _ = invoke("check", "cli_app:app")
    assert code == 0, out
    assert re.search(r"^ok +doubler v2 \(/double\): setup \d+ ms; example answered 200", out, re.M)
    assert re.search(r"^ok +shout \(/shout\): setup \d+ ms; example answered 200", out, re.M)
    assert out.rstrip().endswith("cli_app:app: 2 model(s) OK.")


def test_check_reports_a_model_without_example(in_apps: None) -> None:
    code, out, _ = invoke("check", "cli_failing_app:app")
    assert code == 0
    assert "no example to run" not in out  # Fine has one
    code, out, _ = invoke("check", "basic_app:app")
    assert code == 0
    assert "no example to run (set `example = ...` on EchoSum)" in out


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ("example", r"^FAIL +wrong-example \(/wrong-example\): setup \d+ ms; example answered 400 in \d+ ms: "
                    r"Invalid input: missing key 'features'\.$"),
        ("setup", r"^FAIL +broken-setup \(/broken-setup\): setup failed: FileNotFoundError: weights.bin is missing$"),
    ],
)
def test_check_fails_on_a_failing_model_and_names_it(failure: str, expected: str) -> None:
    result = mest("check", "cli_failing_app:app", env={"CLI_FAILURE": failure})
    assert result.returncode == 1
    assert re.search(expected, result.stdout, re.M), result.stdout
    assert re.search(r"^ok +fine \(/fine\)", result.stdout, re.M)  # the healthy model is still checked
    assert "Error: 1 of 2 model(s) failed the check." in result.stderr


def test_check_fails_when_the_app_cannot_be_imported() -> None:
    result = mest("check", "cli_failing_app:app", env={"CLI_FAILURE": "import"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr  # the user's own traceback, to find the bug
    assert "Error: Importing cli_failing_app:app failed: RuntimeError: the app module failed on purpose" in (
        result.stderr
    )


def test_check_fails_on_an_invalid_environment_variable_naming_it() -> None:
    result = mest("check", "cli_app:app", env={"MEST_MAX_BODY_SIZE": "ten"})
    assert result.returncode == 1
    assert "Error: Invalid configuration: MEST_MAX_BODY_SIZE='ten': expected an integer" in result.stderr


def test_unknown_mest_variables_are_reported() -> None:
    result = mest("check", "cli_app:app", env={"MEST_MAX_BODYSIZE": "1"})
    assert result.returncode == 0
    assert "ignoring unknown variable(s) MEST_MAX_BODYSIZE" in result.stderr


# -- mest serve: refused before gunicorn starts ---------------------------------------------------------


def test_serve_refuses_an_app_that_cannot_be_imported() -> None:
    result = mest("serve", "cli_failing_app:app", "--port", "0", env={"CLI_FAILURE": "import"})
    assert result.returncode == 1
    assert "Cannot serve cli_failing_app:app" in result.stderr
    assert "the app module failed on purpose" in result.stderr
    assert "Starting gunicorn" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"MEST_WORKERS": "many"}, "Invalid value for '--workers' / '-w' (env var: 'MEST_WORKERS'): 'many'"),
        (["--port", "70000"], {}, "Invalid value for '--port' (env var: 'MEST_PORT'): 70000"),
        ([], {"MEST_WORKER_CLASS": "eventlet"}, "(env var: 'MEST_WORKER_CLASS'): 'eventlet' is not one of"),
        (["--preload"], {}, "--preload does not work with gevent workers"),
        ([], {"MEST_SERVER": "uvicorn"}, "(env var: 'MEST_SERVER'): 'uvicorn' is not one of"),
        (["--server", "granian", "-k", "sync", "--preload"], {}, "--preload is a gunicorn option"),
    ],
)
def test_serve_rejects_invalid_settings_naming_them(args: list[str], env: dict[str, str], message: str) -> None:
    result = mest("serve", "cli_app:app", *args, env=env)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
    assert "Starting gunicorn" not in result.stderr


# -- mest serve: real servers ---------------------------------------------------------------------------


@pytest.mark.server
def test_serve_on_granian_checks_sets_up_and_serves_the_app() -> None:
    with running(mest_argv("cli_app:app", "--server", "granian", "--workers", "2")) as server:
        with server.client() as client:
            ready = client.get("/health/ready")
            served = client.post("/double", json={"x": [1, 2]})
            shouted = client.post("/shout", content=b"hi", headers={"Content-Type": "text/plain"})
        deadline = time.monotonic() + 30  # Mest's log lines are written in batches (at most 0.1 s late)
        while server.output.count("models ready in") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert " * Mest serving cli_app:app on http://127.0.0.1:" in server.output
    assert "granian " in server.output and "2 workers x 4 threads" in server.output
    assert server.output.count("models ready in") == 2  # each worker ran the setup before serving
    assert ready.status_code == 200
    assert served.status_code == 200, served.text
    assert served.json()["doubled"] == [2, 4]
    assert served.headers["X-Request-ID"]
    assert shouted.status_code == 200 and shouted.text == "HI"


@pytest.mark.server
def test_serve_prints_what_it_serves_and_serves_it() -> None:
    script = shutil.which("mest", path=str(Path(sys.executable).parent))
    assert script is not None, "the mest console script is not installed next to this interpreter"
    argv = [script, *mest_argv("cli_app:app", "--workers", "2")[3:]]
    with running(argv) as server, server.client() as client:
        assert len(children(server.pid)) == 2
        response = client.post("/double", json={"x": [3]})
        assert response.status_code == 200
        assert response.json()["doubled"] == [6]
        assert client.post("/shout", content=b"hi", headers={"Content-Type": "text/plain"}).text == "HI"
        banner = server.wait_for_output(r"(?s) \* Mest serving cli_app:app on (\S+)\n(.*?)\n(?! )")
    assert banner.group(1) == server.url
    assert re.search(r"gunicorn \S+: 2 gevent workers, timeout 60s, graceful timeout 30s", banner.group(2))
    assert re.search(r"POST +/double +model doubler version 2", banner.group(2))
    assert re.search(r"POST +/shout +model shout", banner.group(2))
    assert "development server" not in server.output  # the module's app.run() was a no-op in every process


@pytest.mark.server
def test_serve_flags_win_over_variables_which_win_over_defaults() -> None:
    env = {"MEST_WORKERS": "1", "MEST_TIMEOUT": "45", "MEST_WORKER_CLASS": "gthread", "MEST_MAX_BODY_SIZE": "64"}
    argv = mest_argv("cli_app:app", "--timeout", "33", "--max-body-size", "32")
    with running(argv, env=env) as server, server.client() as client:
        assert len(children(server.pid)) == 1
        assert client.post("/double", json={"x": [1, 2, 3]}).status_code == 200  # 21 bytes
        too_big = client.post("/double", json={"x": list(range(20))})
        assert too_big.status_code == 413
    assert re.search(r"1 gthread x 4 threads worker, timeout 33s", server.output)
    assert "max body 32 bytes" in server.output


@pytest.mark.server
def test_serve_preload_imports_once_in_the_master_and_runs_sync_workers() -> None:
    with running(mest_argv("cli_app:app", "-w", "2", "-k", "sync", "--preload")) as server:
        with server.client() as client:
            pids = {client.post("/double", json={"x": [1]}).json()["pid"] for _ in range(4)}
        assert pids <= children(server.pid)
    assert "Using worker: mest.server.gunicorn.DrainingSyncWorker" in server.output
    assert "2 sync workers, timeout 60s, graceful timeout 30s, preloaded" in server.output
    # Imported by the master only: the module's app.run() was skipped there, once.
    assert server.output.count("app.run() ignored") == 1


@pytest.mark.server
def test_serve_json_logs_are_one_object_per_line() -> None:
    with running(mest_argv("cli_app:app", "-w", "1", "--log-format", "json")) as server, server.client() as client:
        assert client.post("/double", json={"x": [1]}).status_code == 200
        server.wait_for_output(r"models ready")
    records = [json.loads(line) for line in server.lines]
    assert {"time", "level", "logger", "pid", "message"} <= set(records[0])
    (serving,) = [r for r in records if r["message"].startswith("Mest serving cli_app:app on ")]
    assert serving["urls"] == [server.url] and serving["workers"] == 1
    assert any(r["path"] == "/double" and r["model"]["name"] == "doubler" for r in serving["routes"])


@pytest.mark.server
def test_serve_reload_restarts_workers_when_the_code_changes(tmp_path: Path) -> None:
    source = tmp_path / "reloading_app.py"
    template = (
        "from mest import Mest\nfrom mest.predictors import PredictorBase\n\n"
        "class P(PredictorBase):\n    def infer(self, data):\n        return {'value': {VALUE!r}}\n\n"
        "app = Mest()\napp.add_inference_handler(P(), '/value')\n"
    )
    source.write_text(template.replace("{VALUE!r}", "'before'"))
    with running(mest_argv("reloading_app:app", "-w", "1", "--reload"), cwd=tmp_path) as server:
        with server.client() as client:
            assert client.post("/value", json={}).json() == {"value": "before"}
            workers = children(server.pid)
            source.write_text(template.replace("{VALUE!r}", "'after'"))

            def reloaded() -> bool:
                try:
                    return bool(client.post("/value", json={}).json() == {"value": "after"})
                except httpx.TransportError:
                    return False

            wait_for(reloaded, 60, "the new code to be served", server)
        assert children(server.pid) and not children(server.pid) & workers
    assert "reloading_app.py modified" in server.output
