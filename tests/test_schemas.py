"""Predictors that declare ``request_schema`` / ``response_schema`` (pydantic), once per web-framework adapter."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, Field

from mest import Mest
from mest.api import Request, Response
from mest.predictors import PredictorBase
from mest.testing import TestClient

MakeApp = Callable[..., Mest]


class Point(BaseModel):
    x: float
    y: float = 0.0


class SumRequest(BaseModel):
    features: list[float] = Field(min_length=1)
    points: list[Point] = []
    label: str | None = None


class SumResponse(BaseModel):
    total: float
    label: str | None = None


class Summer(PredictorBase):
    request_schema = SumRequest
    response_schema = SumResponse

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def pre_process(self, input_data: Any, req: Request) -> Any:
        self.seen.append(input_data)
        return input_data

    def infer(self, processed_data: SumRequest) -> Any:
        total = sum(processed_data.features) + sum(p.x + p.y for p in processed_data.points)
        if processed_data.label == "wrong-shape":
            return {"totally": "not a response"}
        if processed_data.label == "numpy":
            return {"total": np.float32(total), "label": "numpy"}
        if processed_data.label == "model":
            return SumResponse(total=total, label="model")
        if processed_data.label == "raw":
            return Response(b"raw bytes", headers={"Content-Type": "application/octet-stream"})
        return {"total": total, "label": processed_data.label}


@pytest.fixture
def summer() -> Summer:
    return Summer()


@pytest.fixture
def client(make_app: MakeApp, summer: Summer) -> TestClient:
    app = make_app()
    app.add_inference_handler(summer, "/sum")
    return TestClient(app)


def test_pre_process_receives_the_validated_object(client: TestClient, summer: Summer) -> None:
    result = client.post("/sum", json={"features": [1, "2.5"], "points": [{"x": 1}]})
    assert result.status_code == 200, result.text
    assert result.json() == {"total": 4.5, "label": None}
    (seen,) = summer.seen
    assert isinstance(seen, SumRequest)
    assert seen.features == [1.0, 2.5] and seen.points == [Point(x=1.0, y=0.0)]


def test_invalid_body_is_422_with_field_errors_before_pre_process(client: TestClient, summer: Summer) -> None:
    result = client.post("/sum", json={"features": [], "points": [{"y": "abc"}]})
    assert result.status_code == 422
    body = result.json()
    assert body["code"] == "unprocessable_entity" and body["status"] == 422
    assert body["request_id"] == result.headers["x-request-id"]
    errors = {tuple(e["loc"]): e for e in body["detail"]}
    assert set(errors) == {("features",), ("points", 0, "x"), ("points", 0, "y")}
    assert errors[("points", 0, "x")]["type"] == "missing"
    assert errors[("features",)]["type"] == "too_short"
    assert all(set(e) == {"loc", "msg", "type"} for e in body["detail"])  # the input is never echoed
    assert summer.seen == []


def test_wrong_top_level_type_and_malformed_json(client: TestClient) -> None:
    listed = client.post("/sum", json=[1, 2])
    assert listed.status_code == 422
    assert listed.json()["detail"][0]["loc"] == []
    malformed = client.post("/sum", content=b'{"features": [1,')
    assert malformed.status_code == 400
    assert malformed.json()["error"].startswith("Malformed JSON")
    assert client.post("/sum", content=b"").status_code == 400


def test_response_is_validated_and_serialized(client: TestClient) -> None:
    assert client.post("/sum", json={"features": [2], "label": "numpy"}).json() == {"total": 2.0, "label": "numpy"}
    assert client.post("/sum", json={"features": [2], "label": "model"}).json() == {"total": 2.0, "label": "model"}
    raw = client.post("/sum", json={"features": [2], "label": "raw"})
    assert (raw.status_code, raw.content) == (200, b"raw bytes")  # a Response is sent as it is


def test_response_that_does_not_match_is_a_logged_500(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="mest")
    result = client.post("/sum", json={"features": [2], "label": "wrong-shape"})
    assert result.status_code == 500
    assert result.json()["code"] == "inference_error"
    assert "totally" not in result.text and "total" not in result.json()["error"]
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    logged = caplog.text
    assert "response_schema" in logged and "'missing'" in logged
    assert "not a response" not in logged  # field names and error types, never the values
    assert error.exc_info is not None


def test_other_types_than_models(make_app: MakeApp) -> None:
    class Doubler(PredictorBase):
        request_schema = list[int]
        response_schema = dict[str, list[int]]

        def infer(self, processed_data: Any) -> Any:
            return {"doubled": np.asarray(processed_data) * 2}

    app = make_app()
    app.add_inference_handler(Doubler(), "/double")
    client = TestClient(app)
    assert client.post("/double", json=[1, 2]).json() == {"doubled": [2, 4]}
    bad = client.post("/double", json=[1, "x"])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == [1]


def test_v2_requests_are_not_validated_against_the_route_schema(make_app: MakeApp) -> None:
    class Tensor(PredictorBase):
        request_schema = SumRequest

        def infer(self, processed_data: Any) -> Any:
            return processed_data["x"] * 2

    app = make_app()
    app.add_inference_handler(Tensor(), "/t", name="t")
    client = TestClient(app)
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}
    result = client.post("/v2/models/t/infer", json=body)
    assert result.status_code == 200, result.text
    assert result.json()["outputs"][0]["data"] == [2, 4]


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (SumRequest(features=[1]), "declare the class itself"),
        (3, "is not a type pydantic can validate"),
    ],
)
def test_bad_declarations_fail_at_registration(declared: Any, message: str) -> None:
    class Bad(PredictorBase):
        request_schema = declared

        def infer(self, processed_data: Any) -> Any:
            return processed_data

    with pytest.raises(TypeError, match=message) as raised:
        Mest().add_inference_handler(Bad(), "/bad")
    assert "Correct usage" in str(raised.value)


def test_a_request_schema_needs_a_json_content_type() -> None:
    class Images(PredictorBase):
        content_types = ("image/png",)
        request_schema = SumRequest

        def infer(self, processed_data: Any) -> Any:
            return processed_data

    with pytest.raises(TypeError, match="content_types accept no JSON"):
        Mest().add_inference_handler(Images(), "/img")
