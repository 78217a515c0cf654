"""The OpenAPI operations of a predictor's own route and of this package's endpoints (document, docs page).

A predictor route's operation is written from what the predictor declares: its content types, its pydantic
``request_schema``/``response_schema``, its ``example``, whether it streams, its class docstring.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..codecs import json
from ..endpoints import MODEL_ERRORS, STREAM_CONTENT, Operation, ok

__all__ = ["DOCS_OPERATION", "OPENAPI_OPERATION", "predict_operation"]

_JSON = "application/json"
OPENAPI_OPERATION = Operation(
    tag="service", summary="This OpenAPI document", responses={"200": ok("The document.", _JSON, {"type": "object"})}
)
DOCS_OPERATION = Operation(
    tag="service",
    summary="Interactive API documentation (Swagger UI)",
    responses={"200": ok("The page.", "text/html", {"type": "string"})},
)


def _json_example(value: Any) -> Any:
    """The predictor's ``example`` if it is JSON (what Swagger UI pre-fills), else nothing."""
    if value is None or isinstance(value, (bytes, bytearray)):
        return None
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def _class_doc(obj: Any) -> str | None:
    doc = type(obj).__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


def predict_operation(predictor: Any, label: str, request_model: Any = None, response_model: Any = None) -> Operation:
    """The operation of a predictor's own route.

    Args:
        predictor: The user's predictor (its ``content_types``, ``example`` and docstring are read).
        label: The model's name, with its version if it has one.
        request_model: The pydantic ``TypeAdapter`` of its ``request_schema``, if it declares one.
        response_model: The same for its ``response_schema``.
    """
    request: dict[str, dict[str, Any]] = {}
    for media_type in getattr(predictor, "content_types", (_JSON,)):
        if json.is_json(media_type.lower()):
            entry: dict[str, Any] = {"schema": {}}
            example = _json_example(getattr(predictor, "example", None))
            if example is not None:
                entry["example"] = example
            request[media_type] = entry
        else:
            request[media_type] = {"schema": {"type": "string", "format": "binary"}}
    answer = ok("The result of post_process.", _JSON, {})
    post_process = getattr(type(predictor), "post_process", None)
    if getattr(predictor, "stream_format", None) or inspect.isgeneratorfunction(post_process):
        answer["content"].update(STREAM_CONTENT)  # a streaming predictor (docs/streaming.md)
    return Operation(
        tag="models",
        summary=f"Predict with model {label}",
        description=_class_doc(predictor),
        request=request,
        responses={"200": answer},
        errors=MODEL_ERRORS,
        default_error="Another error raised by the predictor.",
        request_model=request_model,
        response_model=response_model,
    )
