"""Mest's zero-configuration log handler: buffered, ordered, never late for errors, never lost at exit.

The handler (``mest.observability._stderr.StderrHandler``) batches writes to stderr, and Mest's access log skips
``LogRecord`` construction when that handler is all that would see the line. These tests pin down that this is
invisible to users: the same text as the ``logging`` path, every line written (at the flush interval, at once
for warnings and errors, at exit), and none written twice after a fork.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import textwrap
import time

import pytest

from mest.observability import JsonFormatter, TextFormatter
from mest.observability._logging import ACCESS_LOGGER, access_record
from mest.observability._stderr import FLUSH_INTERVAL_S, StderrHandler

MSG = "%s %s %d %.2fms model=%s batch=%s request_id=%s"
ARGS = ("POST", "/echo", 200, 1.234, "echo", 1, "rid-1")
FIELDS = {"method": "POST", "route": "/echo", "status": 200, "latency_ms": 1.234, "model": "echo",
          "batch_size": 1, "request_id": "rid-1"}


def run_script(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (no logging configured, as under a bare ``gunicorn app:app``)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(
    "formatter",
    [
        TextFormatter(),
        JsonFormatter(),
        TextFormatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S %z"),
        TextFormatter("%(route)s %(request_id)s %(threadName)s | %(message)s"),  # needs a record: built late
    ],
    ids=["text", "json", "mest-serve-text", "custom-fields"],
)
def test_the_direct_line_is_the_line_logging_would_write(formatter: logging.Formatter) -> None:
    created = 1764072000.987654
    record = access_record(MSG, ARGS, dict(FIELDS), created)
    direct = formatter.access_line(created, MSG % ARGS, dict(FIELDS))  # type: ignore[attr-defined]
    assert direct == formatter.format(record)


def test_a_record_built_without_logging_has_what_logging_would_give_it() -> None:
    expected = logging.getLogger(ACCESS_LOGGER).makeRecord(ACCESS_LOGGER, logging.INFO, "f", 0, MSG, ARGS, None,
                                                            None, dict(FIELDS))
    record = access_record(MSG, ARGS, dict(FIELDS))
    assert set(vars(record)) == set(vars(expected))
    for name in ("name", "levelno", "levelname", "process", "processName", "thread", "threadName", "msg", "args"):
        assert getattr(record, name) == getattr(expected, name), name
    assert record.getMessage() == expected.getMessage()


def test_lines_are_written_in_order_errors_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    handler = StderrHandler()
    handler.setFormatter(TextFormatter())
    text = handler.formatter.access_line  # type: ignore[union-attr]
    handler.add_access(text, time.time(), MSG, ARGS, None)
    handler.add_access(text, time.time(), MSG, ("GET", "/x", 404, 0.5, "echo", "-", "rid-2"), None)
    error = logging.LogRecord("mest", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    handler.handle(error)  # an error writes everything before it, then itself, before returning
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        MSG % ARGS, MSG % ("GET", "/x", 404, 0.5, "echo", "-", "rid-2"), "boom now"
    ]


def test_info_lines_are_written_by_the_flusher_without_a_flush_call(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    handler = StderrHandler()
    handler.setFormatter(TextFormatter())
    handler.add_access(handler.formatter.access_line, time.time(), MSG, ARGS, None)  # type: ignore[union-attr]
    deadline = time.monotonic() + 30 * FLUSH_INTERVAL_S + 5
    while "request_id=rid-1" not in stream.getvalue():
        assert time.monotonic() < deadline, "the flusher never wrote the line"
        time.sleep(FLUSH_INTERVAL_S / 2)
    assert stream.getvalue().count("request_id=rid-1") == 1


def test_a_process_that_exits_right_after_a_request_loses_no_line() -> None:
    result = run_script("""
        from mest import Mest
        from mest.predictors import PredictorBase
        from mest.testing import TestClient

        class Echo(PredictorBase):
            def pre_process(self, input_data, req): return input_data
            def infer(self, x): return x

        app = Mest()
        app.add_inference_handler(Echo(), "/echo", name="echo")
        client = TestClient(app)
        for i in range(3):
            assert client.post("/echo", json={"i": i}, headers={"X-Request-ID": f"last-{i}"}).status_code == 200
    """)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "mest.access" in line]
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert re.fullmatch(
            rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} INFO mest\.access: POST /echo 200 [\d.]+ms model=echo "
            rf"batch=1 request_id=last-{i}", line), line


def test_json_lines_through_the_direct_path_carry_every_field() -> None:
    result = run_script("""
        from mest import Mest
        from mest.predictors import PredictorBase
        from mest.testing import TestClient

        class Echo(PredictorBase):
            def pre_process(self, input_data, req): return input_data
            def infer(self, x): return x

        app = Mest(log_format="json")
        app.add_inference_handler(Echo(), "/echo", name="echo")
        assert TestClient(app).post("/echo", json={}, headers={"X-Request-ID": "j-1"}).status_code == 200
    """)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "mest.access"]
    assert len(access) == 1
    entry = access[0]
    assert {k: entry[k] for k in ("level", "method", "route", "status", "model", "batch_size", "request_id")} == {
        "level": "INFO", "method": "POST", "route": "/echo", "status": 200, "model": "echo", "batch_size": 1,
        "request_id": "j-1",
    }
    assert isinstance(entry["latency_ms"], float) and entry["message"].startswith("POST /echo 200 ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_a_forked_child_never_writes_its_parents_waiting_lines_and_knows_its_own_pid() -> None:
    result = run_script("""
        import os, sys, time
        from mest._process import current_pid
        from mest.observability import TextFormatter
        from mest.observability._stderr import StderrHandler

        handler = StderrHandler()
        handler.setFormatter(TextFormatter())
        line = handler.formatter.access_line
        handler.add_access(line, time.time(), "%s", ("from-parent",), None)
        pid = os.fork()
        if pid == 0:
            assert current_pid() == os.getpid()
            handler.add_access(line, time.time(), "%s", ("from-child",), None)
            handler.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        assert current_pid() == os.getpid()
        handler.flush()
    """)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("from-parent") == 1
    assert result.stderr.count("from-child") == 1
