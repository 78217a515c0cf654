"""Endpoints: what Mest serves, each described by whoever makes it.

Every route (a predictor's, the Open Inference Protocol's, health, metrics, the OpenAPI document and docs page,
an extension's) is an :class:`Endpoint`: its method, its exact path, the function that answers it, the model it
belongs to, and its OpenAPI operation. Providers return lists of them; the app wraps each once and hands them
to the web-framework adapter; ``openapi/`` builds the document by walking them. Why records: nothing downstream
has to guess back from a path what an endpoint is (GUIDE.md, habit 12).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .api import Request, Response

__all__ = ["MODEL_ERRORS", "STREAM_CONTENT", "Endpoint", "Operation", "Responder", "ok"]

#: A function that answers one request: takes Mest's request, returns Mest's response. Once the app has
#: wrapped it (request id, access control, errors, metrics) the response's ``body`` is rendered ``bytes``
#: (or, for a :class:`~mest.api.StreamingResponse`, an iterable of ``bytes``): what adapters receive.
Responder = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class Operation:
    """What the OpenAPI document says about one endpoint, as plain data.

    ``openapi/`` completes it into an OpenAPI Operation Object: the ``operationId``, the ``X-Request-ID``
    header on every response, one response per ``errors`` entry with the error body, the ``default`` error,
    and the security requirement when API keys are on.

    Attributes:
        tag: The group the docs page shows it in.
        summary: One line.
        responses: OpenAPI Response Objects by status, without headers (``{"description", "content"}``).
        request: Media Type Objects (``{"schema": ..., "example": ...}``) of a required body, by media type.
        errors: Error statuses answered with the error body, and what each means.
        error_schema: The error body's schema when it is not Mest's own (OpenAI's routes).
        default_error: The description of the ``default`` (any other error) response.
        description: Longer text (a predictor's class docstring).
        components: Schemas the operation refers to (``#/components/schemas/NAME``), by name.
        request_model: A pydantic ``TypeAdapter`` whose JSON Schema is the schema of every JSON media type
            in ``request`` (converted with every other endpoint's, so shared models become one component).
        response_model: The same for the JSON media type of the ``200`` response.
    """

    tag: str
    summary: str
    responses: Mapping[str, Mapping[str, Any]]
    request: Mapping[str, Mapping[str, Any]] | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    error_schema: Mapping[str, Any] | None = None
    default_error: str = "Error."
    description: str | None = None
    components: Mapping[str, Any] = field(default_factory=dict)
    request_model: Any = None
    response_model: Any = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: ``method path`` answered by ``responder``.

    Attributes:
        method: The HTTP method, upper case.
        path: The exact path (Mest expands everything it serves into concrete paths).
        responder: Answers the request (unwrapped: the app adds request ids, access control and errors).
        model: The name of the model the endpoint belongs to (metric labels, ``mest routes``), if any.
        version: That model's version, if it has one.
        operation: Its OpenAPI operation; ``None`` documents it generically.
        documented: ``False`` leaves it out of the OpenAPI document (the docs page's files).
    """

    method: str
    path: str
    responder: Responder
    model: str | None = None
    version: str | None = None
    operation: Operation | None = None
    documented: bool = True


def ok(description: str, media_type: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A response of one media type, for :attr:`Operation.responses`."""
    return {"description": description, "content": {media_type: {"schema": schema}}}


#: What an endpoint that reads a body and runs a model answers besides 200, and when (for
#: :attr:`Operation.errors`).
MODEL_ERRORS: Mapping[str, str] = {
    "400": "The body is malformed, or pre_process could not use it.",
    "413": "The body is larger than max_body_size.",
    "415": "The body's content type is not one the predictor accepts.",
    "422": "The body does not match the request schema (detail lists the fields).",
    "500": "The model or post_process failed (the server log has the traceback).",
    "503": "The model is not ready, or its queue is full (retry after Retry-After seconds).",
    "504": "The request was not answered within the handler's time limit.",
}
#: The 200 content of a stream: SSE, or NDJSON when the client asks for it.
STREAM_CONTENT: Mapping[str, Any] = {
    "text/event-stream": {"schema": {"type": "string", "description": "One `data:` event per item."}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "One JSON document per line."}},
}
