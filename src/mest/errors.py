"""Mest's exceptions: one root, one family per kind of failure, the HTTP status as an attribute.

Predictor code may raise any of these to choose the status and message the client gets, for example
``raise BadRequest("features must have 4 values")``. This module imports nothing of mest.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "GatewayTimeout",
    "InferenceError",
    "MestError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RequestError",
    "RequestTimeout",
    "ServiceUnavailable",
    "Unauthorized",
    "UnprocessableEntity",
    "UnsupportedMediaType",
    "error_body",
]


class MestError(Exception):
    """Root of every error Mest turns into an HTTP response.

    Args:
        message: Safe to show to clients: never include a traceback or an internal path.
        detail: Optional JSON-serializable details (for example field-level validation errors).
        headers: Extra response headers (for example ``Retry-After``).
    """

    status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.status.phrase
        super().__init__(self.message)
        self.detail = detail
        self.headers = dict(headers or {})


class RequestError(MestError):
    """The client sent something Mest or the predictor cannot process (4xx)."""

    status = HTTPStatus.BAD_REQUEST
    code = "bad_request"


class BadRequest(RequestError):
    """Malformed or unusable input (400)."""


class Unauthorized(RequestError):
    """Missing or wrong credentials (401)."""

    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


class NotFound(RequestError):
    """No such route, model or version (404)."""

    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class MethodNotAllowed(RequestError):
    """The route exists but not for this HTTP method (405)."""

    status = HTTPStatus.METHOD_NOT_ALLOWED
    code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    """The body exceeds the configured size limit (413)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class RequestTimeout(RequestError):
    """The client stopped sending the request body for longer than the server's body timeout (408)."""

    status = HTTPStatus.REQUEST_TIMEOUT
    code = "request_timeout"


class UnsupportedMediaType(RequestError):
    """The body's content type is not one the handler accepts (415)."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class UnprocessableEntity(RequestError):
    """Well-formed input that fails validation (422)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "unprocessable_entity"


class InferenceError(MestError):
    """The predictor failed while serving a request (500)."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR
    code = "inference_error"


class ServiceUnavailable(MestError):
    """Not ready, or overloaded: try again later (503)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "unavailable"


class GatewayTimeout(MestError):
    """The request was not answered within its time limit (504)."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    code = "timeout"


def error_body(error: MestError, request_id: str) -> dict[str, Any]:
    """The JSON body of every error response, the one place that shape is decided.

    ``error`` is a plain string so Open Inference Protocol clients (which read ``{"error": "..."}``) understand
    it too; ``code`` is a stable machine-readable name; ``detail`` appears only when there is one.
    """
    body: dict[str, Any] = {
        "error": error.message,
        "code": error.code,
        "status": int(error.status),
        "request_id": request_id,
    }
    if error.detail is not None:
        body["detail"] = error.detail
    return body
