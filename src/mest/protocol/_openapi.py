"""OpenAPI operations of the streaming protocols: Triton's generate extension and the OpenAI-compatible
routes (:mod:`mest.protocol.generate`, :mod:`mest.protocol.openai`)."""

from __future__ import annotations

from typing import Any

from ..endpoints import STREAM_CONTENT, Operation
from ._v2_openapi import V2_TAG

__all__ = ["OPENAI_TAG", "generate_operation", "openai_operation"]

OPENAI_TAG = "openai"
_JSON = "application/json"
_SSE = "text/event-stream"
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]}, "request_id": {"type": "string"},
    }}},
}
_GENERATE_REQUEST = {
    "type": "object",
    "description": "Named inputs (for example text_input) and optional parameters.",
    "properties": {"text_input": {"type": "string"}, "parameters": {"type": "object"}},
    "additionalProperties": True,
}
_GENERATE_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version"],
    "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                   "text_output": {}},
    "additionalProperties": True,
}
_MESSAGES = {"type": "array", "items": {"type": "object", "required": ["role"], "properties": {
    "role": {"type": "string"}, "content": {}}}}
_OPENAI: dict[tuple[str, str], tuple[str, dict[str, Any] | None, bool]] = {
    ("GET", "/v1/models"): ("List the models (OpenAI-compatible)", None, False),
    ("POST", "/v1/chat/completions"): ("Chat completion (OpenAI-compatible; stream=true for SSE chunks)", {
        "type": "object", "required": ["model", "messages"],
        "properties": {"model": {"type": "string"}, "messages": _MESSAGES, "stream": {"type": "boolean"},
                       "max_tokens": {"type": "integer"}},
    }, True),
    ("POST", "/v1/completions"): ("Text completion (OpenAI-compatible; stream=true for SSE chunks)", {
        "type": "object", "required": ["model", "prompt"],
        "properties": {"model": {"type": "string"}, "prompt": {"type": ["string", "array"]},
                       "stream": {"type": "boolean"}, "max_tokens": {"type": "integer"}},
    }, True),
    ("POST", "/v1/embeddings"): ("Embeddings (OpenAI-compatible; inputs are batched)", {
        "type": "object", "required": ["model", "input"],
        "properties": {"model": {"type": "string"}, "input": {"type": ["string", "array"]},
                       "encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer"}},
    }, False),
}


def generate_operation(label: str, *, streaming: bool) -> Operation:
    """The operation of a model's ``generate`` (or ``generate_stream``) endpoint."""
    answer = {_SSE: STREAM_CONTENT[_SSE]} if streaming else {_JSON: {"schema": _GENERATE_RESPONSE}}
    return Operation(
        tag=V2_TAG,
        summary=f"{'Stream generated' if streaming else 'Generate'} output of model {label} (Triton generate)",
        request={_JSON: {"schema": _GENERATE_REQUEST}},
        responses={"200": {"description": "OK.", "content": answer}},
    )


def openai_operation(method: str, path: str) -> Operation:
    """The operation of one of the OpenAI-compatible routes (``GET /v1/models``, ``POST /v1/...``)."""
    summary, request, streams = _OPENAI[(method, path)]
    content: dict[str, Any] = {_JSON: {"schema": {"type": "object"}}}
    if streams:
        content[_SSE] = {"schema": {"type": "string", "description": "`data:` chunks, then `data: [DONE]`."}}
    return Operation(
        tag=OPENAI_TAG,
        summary=summary,
        responses={"200": {"description": "OK.", "content": content}},
        request={_JSON: {"schema": request}} if request is not None else None,
        error_schema=_OPENAI_ERROR,
    )
