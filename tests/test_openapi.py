"""GET /openapi.json and GET /docs in one process (TestClient), once per web-framework adapter.

The document is checked with openapi-spec-validator (OpenAPI 3.1); the API is fuzzed against it by
tests/test_openapi_schemathesis.py, and the docs page is driven in chromium by tests/test_docs_browser.py.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from mest import Mest
from mest.openapi import asset_paths
from mest.predictors import PredictorBase
from mest.testing import TestClient

MakeApp = Callable[..., Mest]


class Shape(BaseModel):
    width: float = Field(gt=0)
    height: float = Field(gt=0)


class AreaRequest(BaseModel):
    shapes: list[Shape]


class AreaResponse(BaseModel):
    areas: list[float]


class Area(PredictorBase):
    """Computes the area of rectangles."""

    request_schema = AreaRequest
    response_schema = AreaResponse
    example = {"shapes": [{"width": 2, "height": 3}]}

    def infer(self, processed_data: Any) -> Any:
        return {"areas": [s.width * s.height for s in processed_data.shapes]}


class Untyped(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        return processed_data


class Images(PredictorBase):
    content_types = ("application/json", "image/png")

    def infer(self, processed_data: Any) -> Any:
        return {"size": len(processed_data)}


def spec_of(client: TestClient, path: str = "/openapi.json") -> dict[str, Any]:
    result = client.get(path)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    spec: dict[str, Any] = result.json()
    validate(spec)  # raises if the document is not valid OpenAPI 3.1
    return spec


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.fixture
def app(make_app: MakeApp) -> Mest:
    app = make_app(title="Shapes")
    app.add_inference_handler(Area(), "/area", name="area", version="2")
    app.add_inference_handler(Untyped(), "/untyped")
    app.add_inference_handler(Images(), "/images")
    return app


def test_every_route_is_documented(app: Mest) -> None:
    spec = spec_of(TestClient(app))
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "Shapes"
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    hidden = set(asset_paths("/docs"))
    assert documented == {(m, p) for m, p in app.routes() if p not in hidden}
    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/area", "/v2",
                 "/v2/models/area/versions/2/infer", "/v2/models/area/ready"):
        assert path in spec["paths"], path
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for ops in spec["paths"].values():
        for op in ops.values():
            for response in op["responses"].values():
                assert response["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}


def test_predictor_schemas_are_published(app: Mest) -> None:
    spec = spec_of(TestClient(app))
    op = spec["paths"]["/area"]["post"]
    assert op["summary"] == "Predict with model area version 2"
    assert op["description"] == "Computes the area of rectangles."
    body = op["requestBody"]["content"]["application/json"]
    assert body["example"] == {"shapes": [{"width": 2, "height": 3}]}
    request = resolve(spec, body["schema"])
    assert request["required"] == ["shapes"]
    shape = resolve(spec, request["properties"]["shapes"]["items"])
    assert shape["properties"]["width"]["exclusiveMinimum"] == 0
    response = resolve(spec, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert response["properties"]["areas"]["items"] == {"type": "number"}
    invalid = op["responses"]["422"]["content"]["application/json"]["schema"]
    assert invalid == {"$ref": "#/components/schemas/MestValidationError"}
    for status in ("400", "413", "415", "500", "503", "504", "default"):
        error = op["responses"][status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/MestError"}


def test_routes_without_schemas_accept_any_json_and_declared_media_types(app: Mest) -> None:
    spec = spec_of(TestClient(app))
    untyped = spec["paths"]["/untyped"]["post"]
    assert untyped["requestBody"]["content"] == {"application/json": {"schema": {}}}
    assert untyped["responses"]["200"]["content"]["application/json"]["schema"] == {}
    images = spec["paths"]["/images"]["post"]["requestBody"]["content"]
    assert images["image/png"] == {"schema": {"type": "string", "format": "binary"}}


def test_the_documented_error_body_is_the_one_sent(app: Mest) -> None:
    client = TestClient(app)
    spec = spec_of(client)
    error = spec["components"]["schemas"]["MestError"]
    result = client.post("/area", json={"shapes": [{"width": -1}]})
    assert result.status_code == 422
    body = result.json()
    assert set(error["required"]) <= set(body)
    field = spec["components"]["schemas"]["MestFieldError"]
    assert all(set(field["required"]) == set(item) for item in body["detail"])


def test_routes_added_later_show_up(make_app: MakeApp) -> None:
    app = make_app()
    client = TestClient(app)
    assert "/late" not in spec_of(client)["paths"]
    app.add_inference_handler(Untyped(), "/late")
    assert "/late" in spec_of(client)["paths"]


def test_api_keys_are_documented_as_security_schemes(make_app: MakeApp) -> None:
    app = make_app(api_keys=["k3y-for-tests"], public_paths=["/health/*", "/openapi.json", "/docs*"])
    app.add_inference_handler(Untyped(), "/untyped")
    client = TestClient(app)
    spec = spec_of(client)
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}
    assert spec["paths"]["/untyped"]["post"]["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]
    assert "401" in spec["paths"]["/untyped"]["post"]["responses"]
    assert "security" not in spec["paths"]["/health/live"]["get"]


def test_paths_can_be_moved(make_app: MakeApp) -> None:
    app = make_app(openapi_path="/api/spec.json", docs_path="/api/reference")
    client = TestClient(app)
    assert client.get("/openapi.json").status_code == 404
    assert client.get("/docs").status_code == 404
    spec = spec_of(client, "/api/spec.json")
    assert "/api/spec.json" in spec["paths"] and "/api/reference" in spec["paths"]
    page = client.get("/api/reference").text
    assert 'data-spec-url="spec.json"' in page
    assert 'href="reference/swagger-ui.css?v=' in page and 'src="reference/swagger-ui-bundle.js?v=' in page
    assert client.get("/api/reference/swagger-ui.css").status_code == 200


def test_paths_can_be_switched_off(make_app: MakeApp) -> None:
    no_docs = TestClient(make_app(docs_path=None))
    assert no_docs.get("/docs").status_code == 404
    assert "/docs" not in spec_of(no_docs)["paths"]
    nothing = make_app(openapi_path=None, docs_path=None, metrics_path=None)
    client = TestClient(nothing)
    for path in ("/openapi.json", "/docs", "/docs/swagger-ui-bundle.js", "/metrics"):
        assert client.get(path).status_code == 404, path
        assert path not in {p for _, p in nothing.routes()}


def test_docs_page_loads_only_files_served_by_mest(app: Mest) -> None:
    client = TestClient(app)
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    html = page.text
    assert "<script>" not in html  # no inline script: the CSP would refuse it
    references = [url.split("?v=")[0] for url in re.findall(r'(?:src|href|data-spec-url)="([^"]*)"', html)]
    assert references == ["data:,", "docs/swagger-ui.css", "openapi.json", "docs/swagger-ui-bundle.js",
                          "docs/swagger-init.js"]
    init = client.get("/docs/swagger-init.js")
    assert init.status_code == 200 and "validatorUrl: null" in init.text
    assert not re.search(r"https?:|//[a-z]", init.text)


def test_docs_files_are_served_compressed_or_plain(app: Mest) -> None:
    client = TestClient(app)
    compressed = client.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip, deflate"})
    plain = client.get("/docs/swagger-ui-bundle.js")
    assert compressed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(compressed.content) == plain.content
    assert plain.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in plain.content
    css = client.get("/docs/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css") and b".swagger-ui" in css.content
    for result in (compressed, plain, css):
        assert result.headers["vary"] == "Accept-Encoding"
        assert "max-age" in result.headers["cache-control"]


def test_openapi_facade() -> None:
    import mest.openapi as facade

    assert len(set(facade.__all__)) == len(facade.__all__)  # the order is ruff's (RUF022)
    assert all(hasattr(facade, name) for name in facade.__all__)
