"""Logs of real servers with zero configuration: ``gunicorn app:app`` and ``python app.py`` print one access
line per request (text, or JSON lines with ``MEST_LOG_FORMAT=json``) and errors with their tracebacks."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from support.servers import RunningServer, dev_server, gunicorn

pytestmark = pytest.mark.server


def wait_for_lines(server: RunningServer, pattern: str, count: int) -> list[str]:
    regex = re.compile(pattern)
    deadline = time.monotonic() + 20
    while True:
        found = [line for line in server.output.splitlines() if regex.search(line)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def json_lines(server: RunningServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]


def wait_for_access_records(server: RunningServer, *request_ids: str) -> list[dict[str, Any]]:
    """The JSON lines once an access record of every request id has been read from the server's output."""
    deadline = time.monotonic() + 20
    while True:
        records = json_lines(server)
        logged = {r.get("request_id") for r in records if r.get("logger") == "mest.access"}
        if set(request_ids) <= logged or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_gunicorn_prints_text_access_lines_with_no_configuration() -> None:
    with gunicorn("observed_app:app", workers=2) as server, server.client() as http:
        ids = []
        for n in range(5):
            response = http.post("/echo", json={"n": n})
            assert response.status_code == 200
            ids.append(response.headers["x-request-id"])
        lines = wait_for_lines(server, r"INFO mest\.access: POST /echo 200 ", 5)
    assert len(lines) == 5
    for request_id in ids:
        (line,) = [line for line in lines if f"request_id={request_id}" in line]
        assert re.search(r" POST /echo 200 [0-9.]+ms model=echo batch=1 request_id=", line), line


def test_gunicorn_prints_json_lines_when_asked() -> None:
    env = {"MEST_LOG_FORMAT": "json"}
    with gunicorn("observed_app:app", workers=2, env=env) as server, server.client() as http:
        ok = http.post("/sum", json={"features": [1, 2, 3]})
        invalid = http.post("/sum", json={"features": "many"})
        boom = http.post("/boom", json={})
        records = wait_for_access_records(server, *(r.headers["x-request-id"] for r in (ok, invalid, boom)))
    assert (ok.status_code, invalid.status_code, boom.status_code) == (200, 422, 500)
    assert "exploded" not in boom.text and "Traceback" not in boom.text
    access = {r["request_id"]: r for r in records if r["logger"] == "mest.access"}
    assert access[ok.headers["x-request-id"]]["status"] == 200
    assert access[ok.headers["x-request-id"]]["batch_size"] == 1
    assert access[ok.headers["x-request-id"]]["model"] == "sum"
    assert access[invalid.headers["x-request-id"]]["status"] == 422
    assert access[boom.headers["x-request-id"]]["status"] == 500
    (error,) = [r for r in records if r["level"] == "ERROR"]
    assert error["request_id"] == boom.headers["x-request-id"]
    assert "Traceback" in error["exc_info"] and "the model exploded" in error["exc_info"]


def test_dev_server_prints_json_lines_when_asked() -> None:
    with dev_server("observed_app.py", env={"MEST_LOG_FORMAT": "json"}) as server, server.client() as http:
        response = http.post("/echo", json={"n": 1})
        assert response.status_code == 200
        records = wait_for_access_records(server, response.headers["x-request-id"])
    (access,) = [r for r in records if r["logger"] == "mest.access" and r["route"] == "/echo"]
    assert access["request_id"] == response.headers["x-request-id"]
    assert access["method"] == "POST" and access["status"] == 200
