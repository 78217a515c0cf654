"""Access logs and error logs through the standard logging module, in one process (TestClient + caplog).

Zero-configuration output of real servers (gunicorn, the dev server) is in tests/test_logging_servers.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from mest import Mest
from mest.api import Request
from mest.observability import ACCESS_LOGGER, JsonFormatter, TextFormatter
from mest.predictors import PredictorBase
from mest.testing import TestClient

MakeApp = Callable[..., Mest]
MARKER = "BODY-MARKER-7f3a"


class Echo(PredictorBase):
    def pre_process(self, input_data: Any, req: Request) -> Any:
        if input_data.get("fail"):
            raise RuntimeError(f"pre_process broke on {MARKER}")
        return input_data

    def infer(self, processed_data: Any) -> Any:
        return {"ok": True}


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Each record as both of Mest's formatters print it, plus every attribute: what any handler could see."""
    parts = []
    for record in caplog.records:
        parts.append(JsonFormatter().format(record))
        parts.append(TextFormatter().format(record))
        parts.append(repr(vars(record)))
    return "\n".join(parts)


@pytest.fixture
def client(make_app: MakeApp) -> TestClient:
    app = make_app()
    app.add_inference_handler(Echo(), "/echo", name="echo-model")
    return TestClient(app)


def test_one_access_line_per_request_with_its_fields(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mest")
    ok = client.post("/echo", json={"x": 1}, headers={"X-Request-ID": "client-id-1"})
    live = client.get("/health/live")
    records = access_records(caplog)
    assert len(records) == 2
    first, second = records
    assert first.levelno == logging.INFO
    assert (first.method, first.route, first.status) == ("POST", "/echo", 200)  # type: ignore[attr-defined]
    assert first.model == "echo-model"  # type: ignore[attr-defined]
    assert first.batch_size == 1  # type: ignore[attr-defined]
    assert first.request_id == "client-id-1" == ok.headers["x-request-id"]  # type: ignore[attr-defined]
    assert first.latency_ms > 0  # type: ignore[attr-defined]
    message = first.getMessage()
    assert message.startswith("POST /echo 200 ") and "model=echo-model batch=1 request_id=client-id-1" in message
    assert (second.route, second.status, second.model) == ("/health/live", 200, None)  # type: ignore[attr-defined]
    assert second.request_id == live.headers["x-request-id"]  # type: ignore[attr-defined]


def test_failed_requests_are_logged_with_their_status(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mest")
    assert client.post("/echo", content=b"{not json").status_code == 400
    assert client.get("/nowhere/\x1b[31mred").status_code == 404
    bad, missing = access_records(caplog)
    assert (bad.status, bad.batch_size) == (400, None)  # type: ignore[attr-defined]
    assert "batch=-" in bad.getMessage()
    assert missing.status == 404  # type: ignore[attr-defined]
    assert missing.route == "/nowhere/?[31mred"  # type: ignore[attr-defined]  # no control characters in logs


def test_json_lines_for_machines(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mest")
    client.post("/echo", json={"x": 1}, headers={"X-Request-ID": "abc"})
    (record,) = access_records(caplog)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["logger"] == "mest.access" and parsed["level"] == "INFO"
    assert parsed["time"].endswith("Z")
    assert {k: parsed[k] for k in ("method", "route", "status", "model", "batch_size", "request_id")} == {
        "method": "POST", "route": "/echo", "status": 200, "model": "echo-model", "batch_size": 1, "request_id": "abc",
    }
    assert isinstance(parsed["latency_ms"], float)
    assert "body" not in parsed


def test_errors_go_to_the_log_with_tracebacks_never_to_the_client(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mest")
    result = client.post("/echo", json={"fail": True})
    assert result.status_code == 500
    assert "Traceback" not in result.text and MARKER not in result.text and "pre_process" not in result.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    error = errors[0]
    assert error.exc_info is not None
    assert error.request_id == result.headers["x-request-id"]  # type: ignore[attr-defined]
    parsed = json.loads(JsonFormatter().format(error))
    assert parsed["request_id"] == result.headers["x-request-id"]
    assert "Traceback" in parsed["exc_info"] and "RuntimeError" in parsed["exc_info"]
    assert "Traceback" in TextFormatter().format(error)
    (access,) = access_records(caplog)
    assert access.status == 500  # type: ignore[attr-defined]


def test_request_bodies_are_not_logged_by_default(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/echo", json={"secret": MARKER})
    client.post("/echo", content=f'{{"broken": "{MARKER}'.encode())
    client.post("/echo", json=[MARKER])  # pre_process fails on a list: a logged 400
    assert access_records(caplog)
    assert MARKER not in everything_logged(caplog)


def test_request_bodies_are_logged_when_asked(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(log_bodies=True)
    app.add_inference_handler(Echo(), "/echo")
    client = TestClient(app)
    caplog.set_level(logging.INFO, logger="mest")
    client.post("/echo", json={"secret": MARKER, "pad": "x" * 5000})
    (record,) = access_records(caplog)
    assert MARKER in record.body  # type: ignore[attr-defined]
    assert record.body.endswith("bytes)") and len(record.body) < 1200  # type: ignore[attr-defined]  # truncated
    assert MARKER in record.getMessage()


def test_access_log_can_be_switched_off(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(access_log=False)
    app.add_inference_handler(Echo(), "/echo")
    client = TestClient(app)
    caplog.set_level(logging.DEBUG)
    assert client.post("/echo", json={}).status_code == 200
    assert access_records(caplog) == []


def test_log_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="log_format"):
        Mest(log_format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="docs_path needs openapi_path"):
        Mest(openapi_path=None)
    with pytest.raises(ValueError, match="metrics_path"):
        Mest(metrics_path="metrics")


@pytest.mark.parametrize(
    "fmt",
    [
        None,  # Mest's own
        "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",  # mest serve's
        "%(levelname)-8s %(asctime)s %(name)s %(message)s",
        "100%% %(asctime)s %(message)s",
        "%(asctime)s %(process)6d %(message).10s",
        "%(asctime)-30s %(message)s",  # a width on the time: the general path
        "%(message)s %(asctime)s",  # another order: the general path
        "%(created)f %(msecs)03d %(levelno)d %(message)s",
    ],
)
def test_an_access_line_from_its_parts_is_what_logging_would_write(fmt: str | None) -> None:
    import time

    formatter = TextFormatter(fmt)
    for created in (time.time(), 1_700_000_000.0, 1_700_000_000.999, 1_700_000_123.0005):
        record = logging.LogRecord("mest.access", logging.INFO, __file__, 1, "POST /x 200 1.52ms", (), None)
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        assert formatter.access_line(created, "POST /x 200 1.52ms", None) == formatter.format(record)
