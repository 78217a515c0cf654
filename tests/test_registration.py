"""app.add_inference_handler checks the predictor and its settings at registration, not on the first request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mest import Mest
from mest.predictors import PredictorBase
from mest.testing import TestClient
from mest.webframeworks.wsgi import PlainWSGI


class Echo(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        return processed_data


@pytest.fixture
def app() -> Mest:
    return Mest(web_framework=PlainWSGI())


def test_class_instead_of_instance(app: Mest) -> None:
    with pytest.raises(TypeError) as info:
        app.add_inference_handler(Echo, "/predict")  # type: ignore[arg-type]
    message = str(info.value)
    assert "not an instance" in message
    assert "Echo()" in message
    assert "Correct usage" in message


def test_object_without_predictor_methods(app: Mest) -> None:
    class NotAPredictor:
        def pre_process(self, input_data: Any, req: Any) -> Any:
            return input_data

    with pytest.raises(TypeError) as info:
        app.add_inference_handler(NotAPredictor(), "/predict")  # type: ignore[arg-type]
    assert "infer" in str(info.value)
    assert "post_process" in str(info.value)
    assert "Correct usage" in str(info.value)


def test_predictor_that_does_not_implement_infer(app: Mest) -> None:
    class NoInfer(PredictorBase):
        def pre_process(self, input_data: Any, req: Any) -> Any:
            return input_data

    with pytest.raises(TypeError, match=r"NoInfer must implement infer"):
        app.add_inference_handler(NoInfer(), "/predict")


def test_duck_typed_predictor_is_accepted(app: Mest) -> None:
    class Duck:
        def pre_process(self, input_data: Any, req: Any) -> Any:
            return input_data

        def infer(self, processed_data: Any) -> Any:
            return {"got": processed_data}

        def post_process(self, prediction: Any, req: Any) -> Any:
            return prediction

    app.add_inference_handler(Duck(), "/duck")  # type: ignore[arg-type]
    assert TestClient(app).post("/duck", json=[1]).json() == {"got": [1]}


@pytest.mark.parametrize(
    "route",
    ["predict", "", "//", "/a b", "/a?x=1", "/a#frag", "/a/{id}", "/a//b", "/é", "http://x/y", 123, None],
)
def test_invalid_route(app: Mest, route: Any) -> None:
    with pytest.raises(ValueError, match="Invalid route"):
        app.add_inference_handler(Echo(), route)


def test_route_with_trailing_newline_is_invalid(app: Mest) -> None:
    with pytest.raises(ValueError, match="Invalid route"):
        app.add_inference_handler(Echo(), "/predict\n")


@pytest.mark.parametrize("route", ["/", "/predict", "/api/v1/predict", "/models/iris-1.0/predict", "/trailing/"])
def test_valid_routes(app: Mest, route: str) -> None:
    app.add_inference_handler(Echo(), route)
    assert ("POST", route) in app.routes()
    assert TestClient(app).post(route, json={"a": 1}).json() == {"a": 1}


def test_duplicate_route(app: Mest) -> None:
    app.add_inference_handler(Echo(), "/predict")
    with pytest.raises(ValueError, match="already registered"):
        app.add_inference_handler(Echo(), "/predict", name="other")


def test_route_clashing_with_health_endpoint(app: Mest) -> None:
    with pytest.raises(ValueError, match="already registered"):
        app.add_inference_handler(Echo(), "/health/live")


@pytest.mark.parametrize(
    ("route", "name"),
    [("/api/v1/predict", "api-v1-predict"), ("/predict", "predict"), ("/a/b/", "a-b"), ("/", "root")],
)
def test_derived_name(app: Mest, route: str, name: str) -> None:
    app.add_inference_handler(Echo(), route)
    assert app.pipelines[-1].config.name == name


def test_explicit_name_and_version(app: Mest) -> None:
    app.add_inference_handler(Echo(), "/iris/1", name="iris", version="1")
    app.add_inference_handler(Echo(), "/iris/2", name="iris", version="2")
    assert [(p.config.name, p.config.version, p.config.route) for p in app.pipelines] == [
        ("iris", "1", "/iris/1"),
        ("iris", "2", "/iris/2"),
    ]


def test_duplicate_name(app: Mest) -> None:
    app.add_inference_handler(Echo(), "/a", name="iris")
    with pytest.raises(ValueError, match="already registered at '/a'"):
        app.add_inference_handler(Echo(), "/b", name="iris")


def test_duplicate_derived_name(app: Mest) -> None:
    app.add_inference_handler(Echo(), "/api/v1")
    with pytest.raises(ValueError, match="api-v1"):
        app.add_inference_handler(Echo(), "/b", name="api-v1")


def test_duplicate_name_and_version(app: Mest) -> None:
    app.add_inference_handler(Echo(), "/a", name="iris", version="1")
    with pytest.raises(ValueError, match="already registered"):
        app.add_inference_handler(Echo(), "/b", name="iris", version="1")


@pytest.mark.parametrize("name", ["", "has space", "a/b", "-leading", "x" * 129, 5])
def test_invalid_name(app: Mest, name: Any) -> None:
    with pytest.raises(ValueError, match="Invalid model name"):
        app.add_inference_handler(Echo(), "/predict", name=name)


@pytest.mark.parametrize("version", ["", "1 0", "v/1", 1])
def test_invalid_version(app: Mest, version: Any) -> None:
    with pytest.raises(ValueError, match="Invalid model version"):
        app.add_inference_handler(Echo(), "/predict", version=version)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_batch_size": -1}, "max_batch_size"),
        ({"max_batch_size": 1.5}, "max_batch_size"),
        ({"max_batch_size": "8"}, "max_batch_size"),
        ({"max_batch_delay_ms": -1}, "max_batch_delay_ms"),
        ({"max_queue": 0}, "max_queue"),
        ({"max_queue": 2.5}, "max_queue"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1.0}, "timeout_s"),
    ],
)
def test_invalid_batching_and_queue_settings(app: Mest, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        app.add_inference_handler(Echo(), "/predict", **kwargs)


def test_valid_batching_settings(app: Mest) -> None:
    app.add_inference_handler(Echo(), "/predict", max_batch_size=8, max_batch_delay_ms=0, max_queue=10, timeout_s=0.5)
    config = app.pipelines[0].config
    assert (config.max_batch_size, config.max_batch_delay_ms, config.max_queue, config.timeout_s) == (
        8,
        0.0,
        10,
        0.5,
    )


@pytest.mark.parametrize(
    "register",
    [
        lambda app: app.add_inference_handler(Echo, "/bad"),
        lambda app: app.add_inference_handler(Echo(), "/bad", name="existing"),
        lambda app: app.add_inference_handler(Echo(), "/bad", max_batch_size=0),
        lambda app: app.add_inference_handler(Echo(), "/bad", timeout_s=-1),
    ],
    ids=["class", "duplicate-name", "batch-size", "timeout"],
)
def test_failed_registration_leaves_nothing_behind(app: Mest, register: Callable[[Mest], None]) -> None:
    app.add_inference_handler(Echo(), "/existing")
    before = app.routes()
    with pytest.raises((TypeError, ValueError)):
        register(app)
    assert app.routes() == before
    assert [p.config.route for p in app.pipelines] == ["/existing"]
    assert TestClient(app).post("/bad", json={}).status_code == 404


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_body_size": -1}, "max_body_size"),
        ({"max_body_size": 1.5}, "max_body_size"),
        ({"health_live_path": "live"}, "health_live_path"),
        ({"health_ready_path": "/a b"}, "health_ready_path"),
    ],
)
def test_invalid_app_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mest(web_framework=PlainWSGI(), **kwargs)


def test_web_framework_must_be_a_web_framework() -> None:
    with pytest.raises(TypeError, match="WebFramework"):
        Mest(web_framework=object())  # type: ignore[arg-type]


def test_health_endpoints_can_be_switched_off() -> None:
    app = Mest(web_framework=PlainWSGI(), health_live_path=None, health_ready_path="/ready")
    assert ("GET", "/ready") in app.routes()
    assert "/health/live" not in {path for _, path in app.routes()}
    assert "/health/ready" not in {path for _, path in app.routes()}
    client = TestClient(app)
    assert client.get("/health/live").status_code == 404
    assert client.get("/ready").status_code == 200
