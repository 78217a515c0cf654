"""What a client sees, through the public TestClient, once per web-framework adapter (falcon and plain WSGI)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mest import Mest
from mest.api import Request, Response
from mest.errors import BadRequest, ServiceUnavailable, UnprocessableEntity
from mest.models import BaseModel
from mest.predictors import PredictorBase
from mest.testing import TestClient

MakeApp = Callable[..., Mest]
SECRET = "/secret/weights/model.bin"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


class Sum(PredictorBase):
    """Sums ``features``; echoes ``id``."""

    def pre_process(self, input_data: Any, req: Request) -> Any:
        return {"id": input_data.get("id"), "x": np.asarray(input_data["features"], dtype=float)}

    def infer(self, processed_data: Any) -> Any:
        x = processed_data["x"]
        return {"id": processed_data["id"], "sum": x.sum(), "doubled": x * 2}


def assert_error(result: Any, status: int, code: str) -> dict[str, Any]:
    """The response is Mest's JSON error with this status and code, carrying its request id."""
    assert result.status_code == status, result.content
    assert result.headers["content-type"] == "application/json"
    body = result.json()
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert body["request_id"] == result.headers["x-request-id"]
    return body


def assert_no_internals(result: Any) -> None:
    text = result.text
    for leak in ("Traceback", SECRET, 'File "', ".py", "exploded"):
        assert leak not in text, text


@pytest.fixture
def sum_client(make_app: MakeApp) -> TestClient:
    app = make_app(max_body_size=1000)
    app.add_inference_handler(Sum(), "/sum")
    return TestClient(app)


# -- success ------------------------------------------------------------------------------------------


def test_success_with_numpy_in_result(sum_client: TestClient) -> None:
    result = sum_client.post("/sum", json={"id": "a", "features": [1, 2, 3.5]})
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    assert result.json() == {"id": "a", "sum": 6.5, "doubled": [2.0, 4.0, 7.0]}
    assert int(result.headers["content-length"]) == len(result.content)


def test_seed_predictor_shape(make_app: MakeApp) -> None:
    """The seed README's predictor: its own __init__ without super(), numpy out of infer."""

    class MyPredictor(PredictorBase):
        def __init__(self) -> None:
            self.model = np.array([0.2, 0.3, 0.5])

        def pre_process(self, input_data: Any, req: Request) -> Any:
            return input_data["features"]

        def infer(self, processed_data: Any) -> Any:
            return self.model * len(processed_data)

        def post_process(self, prediction: Any, req: Request) -> Any:
            return {"probability": prediction}

    app = make_app()
    app.add_inference_handler(MyPredictor(), "/api/v1/predict")
    result = TestClient(app).post("/api/v1/predict", json={"features": [[5.1, 3.5, 1.4, 0.2]]})
    assert result.status_code == 200
    assert result.json() == {"probability": [0.2, 0.3, 0.5]}


def test_json_media_type_variants_are_decoded(sum_client: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "application/vnd.x+json"):
        result = sum_client.post("/sum", content=b'{"features": [1]}', headers={"Content-Type": content_type})
        assert result.status_code == 200, content_type
        assert result.json()["sum"] == 1.0


def test_missing_content_type_is_treated_as_json(sum_client: TestClient) -> None:
    result = sum_client.post("/sum", content=b'{"features": [2, 2]}')
    assert result.status_code == 200
    assert result.json()["sum"] == 4.0


def test_chunked_body_within_limit(sum_client: TestClient) -> None:
    result = sum_client.post("/sum", json={"features": [1, 1]}, chunked=True)
    assert result.status_code == 200
    assert result.json()["sum"] == 2.0


def test_req_gives_headers_query_and_context(make_app: MakeApp) -> None:
    class Inspect(PredictorBase):
        def pre_process(self, input_data: Any, req: Request) -> Any:
            req.context["seen"] = True
            return {
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "header": req.headers.get("x-tenant"),
                "content_type": req.content_type,
                "request_id": req.request_id,
            }

        def infer(self, processed_data: Any) -> Any:
            return processed_data

        def post_process(self, prediction: Any, req: Request) -> Any:
            return {**prediction, "context": req.context["seen"]}

    app = make_app()
    app.add_inference_handler(Inspect(), "/inspect")
    result = TestClient(app).post(
        "/inspect?a=1&b=x%20y",
        json={},
        headers={"X-Tenant": "acme", "X-Request-ID": "rid-1"},
        params={"c": "3"},
    )
    assert result.status_code == 200
    assert result.json() == {
        "method": "POST",
        "path": "/inspect",
        "query": {"a": "1", "b": "x y", "c": "3"},
        "header": "acme",
        "content_type": "application/json",
        "request_id": "rid-1",
        "context": True,
    }


# -- Response from post_process -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "status", "content_type", "content"),
    [
        (Response("created", status=201, headers={"X-Custom": "1"}), 201, "text/plain; charset=utf-8", b"created"),
        (Response(b"\x89PNG", headers={"Content-Type": "image/png", "X-Custom": "1"}), 200, "image/png", b"\x89PNG"),
        (Response(b"\x00\x01", headers={"X-Custom": "1"}), 200, "application/octet-stream", b"\x00\x01"),
        (Response("a,b", headers={"Content-Type": "text/csv", "X-Custom": "1"}), 200, "text/csv", b"a,b"),
        (
            Response({"p": np.float32(0.5)}, status=202, headers={"X-Custom": "1"}),
            202,
            "application/json",
            b'{"p":0.5}',
        ),
    ],
    ids=["str", "bytes-typed", "bytes", "str-typed", "json"],
)
def test_response_with_custom_status_headers_and_body(
    make_app: MakeApp, response: Response, status: int, content_type: str, content: bytes
) -> None:
    class Custom(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return processed_data

        def post_process(self, prediction: Any, req: Request) -> Any:
            return Response(response.body, response.status, response.headers)

    app = make_app()
    app.add_inference_handler(Custom(), "/custom")
    result = TestClient(app).post("/custom", json={})
    assert result.status_code == status
    assert result.headers["content-type"] == content_type
    assert result.headers["x-custom"] == "1"
    assert result.content == content
    assert result.headers["x-request-id"]


def test_status_204_has_an_empty_body(make_app: MakeApp) -> None:
    class NoContent(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return None

        def post_process(self, prediction: Any, req: Request) -> Any:
            return Response(status=204)

    app = make_app()
    app.add_inference_handler(NoContent(), "/nothing")
    result = TestClient(app).post("/nothing", json={})
    assert result.status_code == 204
    assert result.content == b""


# -- client errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b'{"features": [1,}', b"\xff", b"nan"])
def test_malformed_json_is_400(sum_client: TestClient, body: bytes) -> None:
    result = sum_client.post("/sum", content=body, headers={"Content-Type": "application/json"})
    error = assert_error(result, 400, "bad_request")
    assert error["error"].startswith("Malformed JSON")


def test_empty_body_is_400(sum_client: TestClient) -> None:
    result = sum_client.post("/sum", content=b"", headers={"Content-Type": "application/json"})
    error = assert_error(result, 400, "bad_request")
    assert "empty" in error["error"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"id": 1}, "missing key 'features'"),  # KeyError
        ({"features": ["a", "b"]}, "could not convert"),  # ValueError
        ({"features": [[1, 2], [3]]}, "Invalid input"),  # ValueError (ragged)
        ({"features": {"a": 1}}, "Invalid input"),  # TypeError
    ],
    ids=["KeyError", "ValueError", "ragged", "TypeError"],
)
def test_pre_process_input_errors_are_400(sum_client: TestClient, payload: Any, fragment: str) -> None:
    result = sum_client.post("/sum", json=payload)
    error = assert_error(result, 400, "bad_request")
    assert fragment in error["error"]


@pytest.mark.parametrize(
    "exc",
    [KeyError("features"), TypeError("expected a list"), ValueError("bad shape"), IndexError("list index")],
    ids=lambda e: type(e).__name__,
)
def test_pre_process_builtin_input_errors_are_400(make_app: MakeApp, exc: Exception) -> None:
    class Picky(PredictorBase):
        def pre_process(self, input_data: Any, req: Request) -> Any:
            raise exc

        def infer(self, processed_data: Any) -> Any:
            raise AssertionError("infer must not run")

    app = make_app()
    app.add_inference_handler(Picky(), "/picky")
    error = assert_error(TestClient(app).post("/picky", json={}), 400, "bad_request")
    assert error["error"].startswith("Invalid input")
    assert str(exc.args[0]) in error["error"]


def test_pre_process_other_exceptions_are_500(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    class Buggy(PredictorBase):
        def pre_process(self, input_data: Any, req: Request) -> Any:
            return input_data.missing_attribute  # AttributeError: a bug, not bad input

        def infer(self, processed_data: Any) -> Any:
            return processed_data

    app = make_app()
    app.add_inference_handler(Buggy(), "/buggy")
    result = TestClient(app).post("/buggy", json={})
    assert_error(result, 500, "internal_error")
    assert_no_internals(result)
    assert any(r.exc_info and r.exc_info[0] is AttributeError for r in caplog.records)


@pytest.mark.parametrize("stage", ["pre_process", "infer", "post_process"])
@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequest("features must have 4 values"), 400, "bad_request"),
        (
            UnprocessableEntity("petal length must be positive", detail={"field": "features"}),
            422,
            "unprocessable_entity",
        ),
        (ServiceUnavailable("warming up", headers={"Retry-After": "3"}), 503, "unavailable"),
    ],
    ids=["400", "422", "503"],
)
def test_mest_errors_raised_by_predictor_code(
    make_app: MakeApp, stage: str, error: Exception, status: int, code: str
) -> None:
    class Raising(PredictorBase):
        def pre_process(self, input_data: Any, req: Request) -> Any:
            if stage == "pre_process":
                raise error
            return input_data

        def infer(self, processed_data: Any) -> Any:
            if stage == "infer":
                raise error
            return processed_data

        def post_process(self, prediction: Any, req: Request) -> Any:
            if stage == "post_process":
                raise error
            return prediction

    app = make_app()
    app.add_inference_handler(Raising(), "/raising")
    body = assert_error(TestClient(app).post("/raising", json={}), status, code)
    assert body["error"] == str(error)
    if status == 422:
        assert body["detail"] == {"field": "features"}
    else:
        assert "detail" not in body


def test_error_headers_reach_the_client(make_app: MakeApp) -> None:
    class Busy(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            raise ServiceUnavailable("warming up", headers={"Retry-After": "3"})

    app = make_app()
    app.add_inference_handler(Busy(), "/busy")
    result = TestClient(app).post("/busy", json={})
    assert_error(result, 503, "unavailable")
    assert result.headers["retry-after"] == "3"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png"])
def test_unsupported_content_type_is_415(sum_client: TestClient, content_type: str) -> None:
    result = sum_client.post("/sum", content=b"features=1", headers={"Content-Type": content_type})
    error = assert_error(result, 415, "unsupported_media_type")
    assert content_type in error["error"]
    assert "application/json" in error["error"]


def test_body_over_limit_is_413(sum_client: TestClient) -> None:
    result = sum_client.post("/sum", json={"features": [1] * 1000})
    error = assert_error(result, 413, "payload_too_large")
    assert "1000 bytes" in error["error"]


def test_chunked_body_over_limit_is_413(sum_client: TestClient) -> None:
    result = sum_client.post("/sum", json={"features": [1] * 1000}, chunked=True)
    assert_error(result, 413, "payload_too_large")


def test_declared_length_over_limit_is_413_without_a_body(sum_client: TestClient) -> None:
    # The client announces 200 MB and sends nothing: the answer must not wait for (or read) the body.
    result = sum_client.post(
        "/sum", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "200000000"}
    )
    assert_error(result, 413, "payload_too_large")


def test_body_at_limit_is_accepted(make_app: MakeApp) -> None:
    body = b'{"features": [1]}'
    app = make_app(max_body_size=len(body))
    app.add_inference_handler(Sum(), "/sum")
    client = TestClient(app)
    assert client.post("/sum", content=body, headers={"Content-Type": "application/json"}).status_code == 200
    assert client.post("/sum", content=body + b" ", headers={"Content-Type": "application/json"}).status_code == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "TRACE"])
def test_wrong_method_is_405_with_allow(sum_client: TestClient, method: str) -> None:
    result = sum_client.request(method, "/sum")
    error = assert_error(result, 405, "method_not_allowed")
    assert result.headers["allow"] == "POST"
    assert method in error["error"]


def test_wrong_method_on_health_is_405(sum_client: TestClient) -> None:
    result = sum_client.post("/health/live", json={})
    assert_error(result, 405, "method_not_allowed")
    assert result.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/", "/nope", "/sum/", "/sum/extra", "/SUM", "/health", "/%E2%98%83"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_route_is_404(sum_client: TestClient, path: str, method: str) -> None:
    error = assert_error(sum_client.request(method, path, json={}), 404, "not_found")
    assert "No route" in error["error"]


# -- server errors --------------------------------------------------------------------------------------


class Exploding(PredictorBase):
    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def infer(self, processed_data: Any) -> Any:
        if self.stage == "infer":
            raise RuntimeError(f"the model exploded reading {SECRET}")
        return processed_data

    def post_process(self, prediction: Any, req: Request) -> Any:
        if self.stage == "post_process":
            raise RuntimeError(f"post_process exploded reading {SECRET}")
        if self.stage == "render":
            return {"not json": object()}
        return prediction


@pytest.mark.parametrize("stage", ["infer", "post_process", "render"])
def test_exception_is_500_without_internals_and_logged_with_request_id(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture, stage: str
) -> None:
    app = make_app()
    app.add_inference_handler(Exploding(stage), "/explode")
    with caplog.at_level(logging.ERROR, logger="mest"):
        result = TestClient(app).post("/explode", json={"x": 1}, headers={"X-Request-ID": "trace-me-42"})
    body = assert_error(result, 500, {"render": "internal_error"}.get(stage, "inference_error"))
    assert body["request_id"] == "trace-me-42"
    assert_no_internals(result)

    records = [r for r in caplog.records if r.levelno >= logging.ERROR and "trace-me-42" in r.getMessage()]
    assert len(records) == 1, caplog.text
    record = records[0]
    assert record.name.startswith("mest")
    assert record.exc_info is not None
    expected_type = TypeError if stage == "render" else RuntimeError
    assert record.exc_info[0] is expected_type
    formatted = caplog.text
    assert "Traceback" in formatted
    if stage != "render":
        assert SECRET in formatted  # the server log has what the client must not see


def test_server_keeps_serving_after_a_500(make_app: MakeApp) -> None:
    class Flaky(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            if processed_data.get("fail"):
                raise RuntimeError("boom")
            return {"ok": True}

    app = make_app()
    app.add_inference_handler(Flaky(), "/flaky")
    client = TestClient(app)
    for _ in range(3):
        assert client.post("/flaky", json={"fail": True}).status_code == 500
        assert client.post("/flaky", json={}).json() == {"ok": True}


# -- request ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc", "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab", "a.b_c:d/e+f=g", "x" * 128])
def test_sane_request_id_is_echoed(sum_client: TestClient, request_id: str) -> None:
    ok = sum_client.post("/sum", json={"features": [1]}, headers={"X-Request-ID": request_id})
    assert ok.headers["x-request-id"] == request_id
    error = sum_client.post("/sum", json={}, headers={"x-request-id": request_id})
    assert error.headers["x-request-id"] == request_id
    assert error.json()["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["", "x" * 129, "x" * 500, "has space", "semi;colon", 'quote"d', "<script>", "tab\there", "é"],
)
def test_insane_request_id_is_replaced(sum_client: TestClient, request_id: str) -> None:
    result = sum_client.post("/sum", json={"features": [1]}, headers={"X-Request-ID": request_id})
    assert GENERATED_ID.match(result.headers["x-request-id"])


@pytest.mark.parametrize("request_id", ["abc\n", "x" * 127 + "\n"])
def test_request_id_with_newline_is_replaced(sum_client: TestClient, request_id: str) -> None:
    result = sum_client.post("/sum", json={"features": [1]}, headers={"X-Request-ID": request_id})
    assert GENERATED_ID.match(result.headers["x-request-id"])


def test_request_id_with_newline_inside_is_replaced(sum_client: TestClient) -> None:
    result = sum_client.post("/sum", json={"features": [1]}, headers={"X-Request-ID": "a\nSet-Cookie: x=1"})
    assert GENERATED_ID.match(result.headers["x-request-id"])
    assert "set-cookie" not in result.headers


def test_generated_request_ids_are_unique(sum_client: TestClient) -> None:
    ids = {sum_client.post("/sum", json={"features": [1]}).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20
    assert all(GENERATED_ID.match(i) for i in ids)


@pytest.mark.parametrize(("method", "path"), [("GET", "/health/live"), ("GET", "/nope"), ("GET", "/sum")])
def test_every_response_carries_a_request_id(sum_client: TestClient, method: str, path: str) -> None:
    assert sum_client.request(method, path, headers={"X-Request-ID": "rid"}).headers["x-request-id"] == "rid"
    assert GENERATED_ID.match(sum_client.request(method, path).headers["x-request-id"])


# -- health and lifecycle -------------------------------------------------------------------------------


def test_health_live_and_ready(sum_client: TestClient) -> None:
    live = sum_client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "alive"}
    ready = sum_client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": {"sum": "ready"}}


def test_ready_without_models(make_app: MakeApp) -> None:
    result = TestClient(make_app()).get("/health/ready")
    assert result.status_code == 200
    assert result.json() == {"status": "ready", "models": {}}


class CountingSetup(PredictorBase):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.calls = 0
        self.fail = fail

    def setup(self) -> None:
        self.calls += 1
        if self.fail:
            raise FileNotFoundError(SECRET)

    def infer(self, processed_data: Any) -> Any:
        return {"calls": self.calls}


def test_setup_failure_makes_route_and_ready_503_while_live_is_200(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = CountingSetup(fail=True), CountingSetup()
    app = make_app()
    app.add_inference_handler(broken, "/broken")
    app.add_inference_handler(fine, "/fine")
    client = TestClient(app)

    route = client.post("/broken", json={})
    body = assert_error(route, 503, "unavailable")
    assert "broken" in body["error"]
    assert_no_internals(route)

    ready = client.get("/health/ready")
    body = assert_error(ready, 503, "unavailable")
    assert body["detail"]["models"]["fine"] == "ready"
    assert body["detail"]["models"]["broken"] != "ready"
    assert_no_internals(ready)

    assert client.get("/health/live").status_code == 200
    assert client.post("/fine", json={}).json() == {"calls": 1}  # one broken model does not take down others

    assert broken.calls == 1  # not retried on every request
    assert any(r.exc_info and r.exc_info[0] is FileNotFoundError for r in caplog.records)
    assert SECRET in caplog.text


def test_setup_runs_once_per_process(make_app: MakeApp) -> None:
    predictor = CountingSetup()
    app = make_app()
    app.add_inference_handler(predictor, "/count")
    assert predictor.calls == 0  # registration does not run setup (gunicorn's master must not load models)
    client = TestClient(app)
    assert client.get("/health/ready").status_code == 200
    for _ in range(5):
        assert client.post("/count", json={}).json() == {"calls": 1}
    assert app.setup() is True
    assert predictor.calls == 1


def test_first_request_runs_setup_without_an_explicit_call(make_app: MakeApp) -> None:
    predictor = CountingSetup()
    app = make_app()
    app.add_inference_handler(predictor, "/count")
    assert TestClient(app).post("/count", json={}).json() == {"calls": 1}


def test_app_setup_reports_readiness(make_app: MakeApp) -> None:
    app = make_app()
    app.add_inference_handler(CountingSetup(), "/ok")
    assert app.setup() is True
    app.add_inference_handler(CountingSetup(fail=True), "/broken")
    assert app.setup() is False


def test_artifacts_are_loaded_by_setup_into_self_model(make_app: MakeApp) -> None:
    class Weights(BaseModel):
        loads = 0

        def load(self) -> Any:
            Weights.loads += 1
            return np.array([1.0, 2.0])

    class Linear(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return self.model @ np.asarray(processed_data)

    app = make_app()
    app.add_inference_handler(Linear(Weights()), "/linear")
    client = TestClient(app)
    assert client.post("/linear", json=[3, 4]).json() == 11.0
    assert client.post("/linear", json=[1, 1]).json() == 3.0
    assert Weights.loads == 1


# -- non-JSON predictors --------------------------------------------------------------------------------


class Upper(PredictorBase):
    content_types = ("text/plain",)

    def infer(self, processed_data: Any) -> Any:
        return {"type": type(processed_data).__name__, "upper": processed_data.decode("utf-8").upper()}


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8", "TEXT/PLAIN"])
def test_non_json_content_type_receives_raw_bytes(make_app: MakeApp, content_type: str) -> None:
    app = make_app()
    app.add_inference_handler(Upper(), "/upper")
    result = TestClient(app).post("/upper", content="héllo {".encode(), headers={"Content-Type": content_type})
    assert result.status_code == 200
    assert result.json() == {"type": "bytes", "upper": "HÉLLO {"}


def test_non_json_predictor_without_content_type_receives_raw_bytes(make_app: MakeApp) -> None:
    app = make_app()
    app.add_inference_handler(Upper(), "/upper")
    assert TestClient(app).post("/upper", content=b"abc").json() == {"type": "bytes", "upper": "ABC"}


def test_non_json_predictor_refuses_json(make_app: MakeApp) -> None:
    app = make_app()
    app.add_inference_handler(Upper(), "/upper")
    error = assert_error(TestClient(app).post("/upper", json={"a": 1}), 415, "unsupported_media_type")
    assert "text/plain" in error["error"]


def test_non_json_body_over_limit_is_413(make_app: MakeApp) -> None:
    app = make_app(max_body_size=10)
    app.add_inference_handler(Upper(), "/upper")
    client = TestClient(app)
    assert_error(
        client.post("/upper", content=b"x" * 11, headers={"Content-Type": "text/plain"}), 413, "payload_too_large"
    )
    assert_error(
        client.post("/upper", content=b"x" * 11, headers={"Content-Type": "text/plain"}, chunked=True),
        413,
        "payload_too_large",
    )


def test_wildcard_and_mixed_content_types(make_app: MakeApp) -> None:
    class Images(PredictorBase):
        content_types = ("application/json", "image/*")

        def infer(self, processed_data: Any) -> Any:
            if isinstance(processed_data, bytes):
                return {"bytes": len(processed_data)}
            return {"json": processed_data}

    app = make_app()
    app.add_inference_handler(Images(), "/images")
    client = TestClient(app)
    assert client.post("/images", content=b"\x89PNG", headers={"Content-Type": "image/png"}).json() == {"bytes": 4}
    assert client.post("/images", content=b"GIF8", headers={"Content-Type": "image/gif"}).json() == {"bytes": 4}
    assert client.post("/images", json=[1]).json() == {"json": [1]}
    error = assert_error(
        client.post("/images", content=b"x", headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type"
    )
    assert "image/*" in error["error"]


def test_routes_registered_after_the_first_request_are_served(make_app: MakeApp) -> None:
    app = make_app()
    client = TestClient(app)
    assert client.post("/late", json={"features": [1]}).status_code == 404
    app.add_inference_handler(Sum(), "/late")
    assert client.post("/late", json={"features": [1]}).json()["sum"] == 1.0
    assert client.get("/late").headers["allow"] == "POST"


def test_non_finite_numbers_are_read_and_written_as_tokens_never_null(sum_client: TestClient) -> None:
    """A predictor's own route reads and writes NaN and infinities as Python's json and Triton do (docs/v2.md)."""
    body = b'{"id": null, "features": [1, NaN, Infinity, -Infinity]}'
    result = sum_client.post("/sum", content=body, headers={"Content-Type": "application/json"})
    assert result.status_code == 200, result.content
    assert b'"doubled":[2.0,NaN,Infinity,-Infinity]' in result.content
    assert b'"sum":NaN' in result.content and b'"id":null' in result.content
    finite = sum_client.post("/sum", json={"features": [1.5, 2]})
    assert b"NaN" not in finite.content and finite.json()["sum"] == 3.5


def test_schema_routes_keep_non_finite_numbers(make_app: MakeApp) -> None:
    from pydantic import BaseModel as Schema

    class Out(Schema):
        value: float
        values: list[float]

    class Ratio(PredictorBase):
        response_schema = Out

        def infer(self, processed_data: Any) -> Any:
            x = float(processed_data["x"])
            return Out(value=float("nan"), values=[x, float("-inf")])

    app = make_app()
    app.add_inference_handler(Ratio(), "/ratio")
    client = TestClient(app)
    result = client.post("/ratio", content=b'{"x": 0}', headers={"Content-Type": "application/json"})
    assert result.status_code == 200, result.content
    assert result.content == b'{"value":NaN,"values":[0.0,-Infinity]}'
