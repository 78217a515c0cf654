"""mest.errors: one root, families under it, the status as an attribute, one function for the body."""

from __future__ import annotations

import inspect
from http import HTTPStatus

import orjson
import pytest

from mest import errors
from mest.errors import (
    BadRequest,
    GatewayTimeout,
    InferenceError,
    MestError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    ServiceUnavailable,
    Unauthorized,
    UnprocessableEntity,
    UnsupportedMediaType,
    error_body,
)

EXPECTED = [
    (MestError, 500, "internal_error"),
    (RequestError, 400, "bad_request"),
    (BadRequest, 400, "bad_request"),
    (Unauthorized, 401, "unauthorized"),
    (NotFound, 404, "not_found"),
    (MethodNotAllowed, 405, "method_not_allowed"),
    (RequestTimeout, 408, "request_timeout"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (UnsupportedMediaType, 415, "unsupported_media_type"),
    (UnprocessableEntity, 422, "unprocessable_entity"),
    (InferenceError, 500, "inference_error"),
    (ServiceUnavailable, 503, "unavailable"),
    (GatewayTimeout, 504, "timeout"),
]


@pytest.mark.parametrize(("cls", "status", "code"), EXPECTED, ids=[c.__name__ for c, _, _ in EXPECTED])
def test_status_and_code(cls: type[MestError], status: int, code: str) -> None:
    assert isinstance(cls.status, HTTPStatus)
    assert cls.status == status
    assert cls.code == code
    assert issubclass(cls, MestError)
    error = cls()
    assert error.status == status  # also on instances


def test_every_error_class_is_tested() -> None:
    exported = {
        obj for name in errors.__all__ if isinstance(obj := getattr(errors, name), type) and issubclass(obj, Exception)
    }
    assert exported == {cls for cls, _, _ in EXPECTED}


def test_client_errors_share_a_family() -> None:
    for cls, status, _ in EXPECTED:
        assert issubclass(cls, RequestError) == (400 <= status < 500), cls


def test_each_error_has_a_one_line_docstring() -> None:
    for cls, _, _ in EXPECTED:
        doc = inspect.getdoc(cls)
        assert doc, cls
        assert doc.splitlines()[0].endswith("."), cls


def test_message_defaults_to_the_status_phrase() -> None:
    assert NotFound().message == "Not Found"
    assert str(ServiceUnavailable()) == "Service Unavailable"
    assert BadRequest("features must have 4 values").message == "features must have 4 values"
    assert str(BadRequest("x")) == "x"


def test_detail_and_headers() -> None:
    source = {"Retry-After": "1"}
    error = ServiceUnavailable("busy", detail={"queue": 3}, headers=source)
    assert error.detail == {"queue": 3}
    assert error.headers == {"Retry-After": "1"}
    source["Retry-After"] = "99"
    assert error.headers == {"Retry-After": "1"}  # copied, not shared
    assert BadRequest().headers == {}
    assert BadRequest().detail is None


def test_error_body_shape() -> None:
    body = error_body(BadRequest("bad input"), "req-1")
    assert body == {"error": "bad input", "code": "bad_request", "status": 400, "request_id": "req-1"}
    assert type(body["status"]) is int
    orjson.dumps(body)  # JSON-serializable as it is


def test_error_body_includes_detail_only_when_present() -> None:
    body = error_body(UnprocessableEntity("invalid", detail=[{"loc": ["features"]}]), "r")
    assert body["detail"] == [{"loc": ["features"]}]
    assert body["status"] == 422
    assert "detail" not in error_body(UnprocessableEntity("invalid"), "r")


def test_errors_module_imports_nothing_of_mest() -> None:
    source = inspect.getsource(errors)
    assert "from ." not in source
    assert "import mest" not in source
