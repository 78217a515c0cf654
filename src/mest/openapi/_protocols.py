"""OpenAPI operations of the streaming protocols: Triton's generate extension and the OpenAI-compatible
routes (:mod:`mest.protocol.generate`, :mod:`mest.protocol.openai`)."""

from __future__ import annotations

import re
from typing import Any

from ._v2 import V2_TAG

__all__ = ["OPENAI_TAG", "STREAM_CONTENT", "protocol_operation"]

OPENAI_TAG = "openai"
_JSON = "application/json"
_SSE = "text/event-stream"
_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_GENERATE = re.compile(_MODEL + r"/(?P<kind>generate|generate_stream)")
_REQUEST_ID = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]}, "request_id": {"type": "string"},
    }}},
}
#: The 200 content of a stream: SSE, or NDJSON when the client asks for it.
STREAM_CONTENT = {
    _SSE: {"schema": {"type": "string", "description": "One `data:` event per item."}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "One JSON document per line."}},
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


def _ok(content: dict[str, Any]) -> dict[str, Any]:
    return {"description": "OK.", "headers": _REQUEST_ID, "content": content}


def _error(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "Error.", "headers": _REQUEST_ID, "content": {_JSON: {"schema": schema}}}


def protocol_operation(method: str, path: str, error: dict[str, Any]) -> dict[str, Any] | None:
    """The operation of a generate or OpenAI route, or ``None`` if ``path`` is neither.

    Args:
        method: The HTTP method.
        path: The concrete path.
        error: The schema of Mest's own error body (what generate routes answer on errors).
    """
    found = _GENERATE.fullmatch(path)
    if found is not None and method == "POST":
        label = found["model"] + (f" version {found['version']}" if found["version"] else "")
        streaming = found["kind"] == "generate_stream"
        answer = {_SSE: STREAM_CONTENT[_SSE]} if streaming else {_JSON: {"schema": _GENERATE_RESPONSE}}
        return {
            "tags": [V2_TAG],
            "summary": f"{'Stream generated' if streaming else 'Generate'} output of model {label} (Triton generate)",
            "requestBody": {"required": True, "content": {_JSON: {"schema": _GENERATE_REQUEST}}},
            "responses": {"200": _ok(answer), "default": _error(error)},
        }
    entry = _OPENAI.get((method, path))
    if entry is None:
        return None
    summary, request, streams = entry
    content: dict[str, Any] = {_JSON: {"schema": {"type": "object"}}}
    if streams:
        content[_SSE] = {"schema": {"type": "string", "description": "`data:` chunks, then `data: [DONE]`."}}
    op: dict[str, Any] = {
        "tags": [OPENAI_TAG], "summary": summary,
        "responses": {"200": _ok(content), "default": _error(_OPENAI_ERROR)},
    }
    if request is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": request}}}
    return op
