"""API keys, CORS, size limits and path tricks: in-process on every adapter, then on real servers.

docs/security.md describes the behaviour; every test here fails if the behaviour it names breaks.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mest import Mest
from mest.predictors import PredictorBase
from mest.testing import Result, TestClient
from support.mest_serve import mest_argv, running
from support.servers import RunningServer, dev_server

KEY = "k3y-0ne-7f4e9a"
OTHER_KEY = "k3y-tw0-b2c8d1"
WRONG_KEY = "wr0ng-k3y-5e6f"
ORIGIN = "https://app.example"
MISSING = "Missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
HEALTH = ["/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"]


class Counting(PredictorBase):
    """Counts its calls, so a test can show a request never reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def infer(self, processed_data: Any) -> Any:
        self.calls += 1
        return {"ok": True}


@pytest.fixture
def secured(make_app: Callable[..., Mest]) -> Callable[..., tuple[TestClient, Counting]]:
    def build(**settings: Any) -> tuple[TestClient, Counting]:
        app = make_app(**settings)
        predictor = Counting()
        app.add_inference_handler(predictor, "/api/v1/predict", name="model-a")
        return TestClient(app), predictor

    return build


def predict(client: TestClient, headers: dict[str, str] | None = None) -> Result:
    return client.post("/api/v1/predict", json={"x": 1}, headers=headers)


def assert_unauthorized(result: Result, message: str) -> None:
    assert result.status_code == 401
    body = result.json()
    assert body["code"] == "unauthorized" and body["status"] == 401
    assert body["error"] == message
    assert body["request_id"] == result.headers["x-request-id"]
    assert result.headers["www-authenticate"].startswith('Bearer realm="mest"')


# -- API keys --------------------------------------------------------------------------------------------


def test_no_keys_no_authentication(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, predictor = secured()
    assert predict(client).status_code == 200
    assert predictor.calls == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {OTHER_KEY}"},
        {"X-API-Key": KEY},
        {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": OTHER_KEY},
    ],
)
def test_a_valid_key_is_accepted(secured: Callable[..., tuple[TestClient, Counting]], headers: dict[str, str]) -> None:
    client, predictor = secured(api_keys=[KEY, OTHER_KEY])
    assert predict(client, headers).status_code == 200
    assert predictor.calls == 1


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, MISSING),
        ({"Authorization": "Bearer "}, MISSING),
        ({"Authorization": f"Basic {KEY}"}, MISSING),
        ({"Authorization": f"Bearer {WRONG_KEY}"}, "Invalid API key."),
        ({"X-API-Key": WRONG_KEY}, "Invalid API key."),
        ({"X-API-Key": KEY[:-1]}, "Invalid API key."),
        ({"X-API-Key": KEY + "x"}, "Invalid API key."),
        ({"X-API-Key": "ключ"}, "Invalid API key."),
    ],
)
def test_missing_or_wrong_key_is_refused_before_the_model_runs(
    secured: Callable[..., tuple[TestClient, Counting]], headers: dict[str, str], message: str
) -> None:
    client, predictor = secured(api_keys=[KEY])
    assert_unauthorized(predict(client, headers), message)
    assert predictor.calls == 0


def test_health_is_open_and_everything_else_needs_a_key(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, _ = secured(api_keys=[KEY])
    for path in HEALTH:
        assert client.get(path).status_code == 200, path
    for path in ["/v2", "/v2/models/model-a", "/v2/models/model-a/ready"]:
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
    # Unknown paths do not reveal that they are unknown to a caller without a key.
    assert client.get("/nothing/here").status_code == 401
    assert client.get("/nothing/here", headers={"X-API-Key": KEY}).status_code == 404


def test_public_paths_are_configurable(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, _ = secured(api_keys=[KEY], public_paths=["/v2", "/v2/models/*"])
    assert client.get("/v2").status_code == 200
    assert client.get("/v2/models/model-a").status_code == 200
    assert client.get("/health/live").status_code == 401  # replaced, not added to
    client, _ = secured(api_keys=[KEY], public_paths=[])
    for path in HEALTH:
        assert client.get(path).status_code == 401, path


def test_keys_never_appear_in_repr_errors_or_logs(
    secured: Callable[..., tuple[TestClient, Counting]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = secured(api_keys=[KEY])
    predict(client, {"X-API-Key": WRONG_KEY})
    predict(client, {"Authorization": f"Bearer {KEY}"})
    client.post("/api/v1/predict", content=b"{not json", headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    text = caplog.text + repr(client.app.settings)  # type: ignore[attr-defined]
    assert KEY not in text and WRONG_KEY not in text
    with pytest.raises(ValueError) as caught:
        Mest(api_keys=[KEY, "has space " + OTHER_KEY])
    assert KEY not in str(caught.value) and OTHER_KEY not in str(caught.value)


@pytest.mark.parametrize("keys", [[""], ["two words"], ["a,b"], "single-string", [42]])
def test_invalid_keys_are_rejected_at_startup(keys: Any) -> None:
    with pytest.raises(ValueError, match="api_keys"):
        Mest(api_keys=keys)


# -- CORS ------------------------------------------------------------------------------------------------


def preflight(client: TestClient, path: str = "/api/v1/predict", origin: str = ORIGIN, method: str = "POST") -> Result:
    return client.request(
        "OPTIONS", path,
        headers={"Origin": origin, "Access-Control-Request-Method": method,
                 "Access-Control-Request-Headers": "content-type, x-api-key"},
    )


def test_cors_is_off_by_default(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, _ = secured()
    assert preflight(client).status_code == 405
    response = predict(client, {"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


def test_preflight_is_answered_without_a_key(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, predictor = secured(api_keys=[KEY], cors_origins=[ORIGIN])
    response = preflight(client)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-methods"] == "POST"
    assert "x-api-key" in response.headers["access-control-allow-headers"].lower()
    assert response.headers["access-control-max-age"] == "600"
    assert predictor.calls == 0


def test_cors_headers_on_answers_to_allowed_origins_only(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, _ = secured(api_keys=[KEY], cors_origins=[ORIGIN])
    allowed = predict(client, {"Origin": ORIGIN, "X-API-Key": KEY})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["vary"] == "Origin"
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    # Errors too, so the page's script can read why it was refused.
    assert predict(client, {"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
    other = predict(client, {"Origin": "https://evil.example", "X-API-Key": KEY})
    assert "access-control-allow-origin" not in other.headers


def test_preflight_refusals(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, _ = secured(cors_origins=[ORIGIN])
    disallowed = preflight(client, origin="https://evil.example")
    assert disallowed.status_code == 400
    assert "access-control-allow-origin" not in disallowed.headers
    assert preflight(client, method="DELETE").status_code == 400
    assert preflight(client, path="/no/such/route").status_code == 404


def test_any_origin(secured: Callable[..., tuple[TestClient, Counting]]) -> None:
    client, _ = secured(cors_origins=["*"])
    assert predict(client, {"Origin": "https://anyone.example"}).headers["access-control-allow-origin"] == "*"
    assert preflight(client, origin="https://anyone.example").headers["access-control-allow-origin"] == "*"


# -- path tricks, in-process ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/predict/",
        "/api//v1/predict",
        "/api/v1/./predict",
        "/api/v1/../v1/predict",
        "/api/v2/../v1/predict",
        "/API/V1/PREDICT",
        "/api/v1/predict\x00",
        "/api/v1/predict%00",
        "/api/v1%2Fpredict",
        "/v2/models/model-a/../model-a/infer",
        "/v2/models/model-a%2Finfer",
        "/v2/models/" + "a" * 10_000 + "/infer",
        "/v2/models/model-a/versions/../infer",
    ],
)
def test_paths_that_are_not_a_registered_route_reach_no_handler(
    secured: Callable[..., tuple[TestClient, Counting]], path: str
) -> None:
    client, predictor = secured()
    response = client.post(path, json={"x": 1})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert len(response.content) < 1000  # an overlong path is not echoed back
    assert predictor.calls == 0


def test_a_doubled_leading_slash_is_guarded_like_the_route_it_reaches(
    secured: Callable[..., tuple[TestClient, Counting]],
) -> None:
    # falcon's router ignores an empty first segment, so "//api/v1/predict" reaches /api/v1/predict (the plain
    # WSGI adapter answers 404). Either way only the registered handler is reachable, with its own policy.
    client, predictor = secured(api_keys=[KEY])
    assert client.post("//api/v1/predict", json={"x": 1}).status_code == 401
    assert predictor.calls == 0
    assert client.post("//api/v1/predict", json={"x": 1}, headers={"X-API-Key": KEY}).status_code in (200, 404)


# -- real servers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[RunningServer]:
    """``mest serve`` with keys and CORS from the environment and tight head limits from flags."""
    env = {"MEST_API_KEYS": f"{KEY},{OTHER_KEY}", "MEST_CORS_ORIGINS": ORIGIN}
    argv = mest_argv(
        "secure_app:app", "-w", "1", "--max-body-size", "1000", "--limit-request-line", "1024",
        "--limit-request-fields", "30", "--limit-request-field-size", "2048",
    )
    with running(argv, env=env) as server:
        yield server


def raw(server: RunningServer, request: bytes) -> bytes:
    """Send raw bytes; return the response up to the end of its headers. Never waits for a body we withheld."""
    port = int(server.url.rsplit(":", 1)[1])
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.server
def test_real_server_requires_a_key_and_keeps_it_out_of_its_output(guarded_server: RunningServer) -> None:
    with guarded_server.client() as client:
        assert client.get("/health/ready").status_code == 200
        refused = client.post("/api/v1/predict", json={"x": 1})
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        assert client.post("/api/v1/predict", json={"x": 1}, headers={"X-API-Key": WRONG_KEY}).status_code == 401
        ok = client.post("/api/v1/predict", json={"x": 1}, headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert ok.status_code == 200 and ok.json()["calls"] == 1
        preflight = client.options(
            "/api/v1/predict", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
    guarded_server.wait_for_output(r"API keys required, CORS on")
    for secret in (KEY, OTHER_KEY, WRONG_KEY):
        assert secret not in guarded_server.output


@pytest.mark.server
def test_real_server_refuses_a_large_body_before_reading_it(guarded_server: RunningServer) -> None:
    # Declares a gigabyte and sends none of it: answered at once, or this would wait for the body.
    head = (
        b"POST /api/v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n"
    )
    response = raw(guarded_server, head)
    assert status_of(response) == 413


@pytest.mark.server
@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /health/live?" + b"q" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(40)) + b"\r\n", 431),
        (b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n", 431),
        (b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    ],
)
def test_real_server_enforces_head_limits(guarded_server: RunningServer, request_head: bytes, status: int) -> None:
    assert status_of(raw(guarded_server, request_head)) == status


@pytest.mark.server
@pytest.mark.parametrize(
    "target",
    [
        b"/api/v1/predict/",
        b"/api/v1/./predict",
        b"/api/v1/../v1/predict",
        b"/api/v1/%2e%2e/v1/predict",
        b"/api/v1/predict%00",
        b"/api/v1/predict%2F",
        b"/api%2Fv1%2F..%2Fv1%2Fpredict",
        b"/v2/models/model-a%2F..%2Fmodel-a/infer",
        b"/v2/models/model-a/versions/%2e%2e/infer",
        b"/v2/models/" + b"a" * 900 + b"/infer",
    ],
)
def test_real_server_routes_encoded_and_dotted_paths_nowhere(guarded_server: RunningServer, target: bytes) -> None:
    body = b'{"x": 1}'
    request = (
        b"POST " + target + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nX-API-Key: "
        + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    assert status_of(raw(guarded_server, request)) == 404
    with guarded_server.client() as client:
        # The model was reached exactly once per direct call, never through a trick path.
        before = client.post("/api/v1/predict", json={"x": 1}, headers={"X-API-Key": KEY}).json()["calls"]
        assert status_of(raw(guarded_server, request)) == 404
        after = client.post("/api/v1/predict", json={"x": 1}, headers={"X-API-Key": KEY}).json()["calls"]
    assert after == before + 1


@pytest.mark.server
def test_dev_server_enforces_head_limits_from_the_environment() -> None:
    env = {"MEST_LIMIT_REQUEST_LINE": "256", "MEST_LIMIT_REQUEST_FIELDS": "10", "MEST_LIMIT_REQUEST_FIELD_SIZE": "512"}
    with dev_server("secure_app.py", env=env) as server:
        assert status_of(raw(server, b"GET /health/live?" + b"q" * 300 + b" HTTP/1.1\r\nHost: t\r\n\r\n")) == 414
        many = b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(12))
        assert status_of(raw(server, many + b"\r\n")) == 431
        big = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 600 + b"\r\n\r\n"
        assert status_of(raw(server, big)) == 431
        assert status_of(raw(server, b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")) == 200
        with httpx.Client(base_url=server.url) as client:
            assert client.post("/api/v1/predict", json={"x": 1}).status_code == 200

