"""The OpenAPI operations of the Open Inference Protocol (V2) endpoints, from the protocol's REST specification.

Generic over models: a V2 request's tensors are described by the protocol's own types (model-specific
shapes are what ``GET /v2/models/NAME`` reports at run time).
"""

from __future__ import annotations

from typing import Any

from ..endpoints import MODEL_ERRORS, Operation

__all__ = ["SCHEMAS", "V2_TAG", "v2_operation"]

V2_TAG = "Open Inference Protocol (V2)"
_JSON = "application/json"

_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]
_PARAMETERS: dict[str, Any] = {"type": "object", "additionalProperties": True}

#: Components added to the document when V2 paths exist (prefixed to stay clear of users' model names).
SCHEMAS: dict[str, Any] = {
    "V2MetadataTensor": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": _PARAMETERS,
        },
    },
    "V2ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2MetadataTensor"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2MetadataTensor"}},
            "parameters": _PARAMETERS,
        },
    },
    "V2RequestInput": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": _PARAMETERS,
            "data": {"description": "The tensor's elements, flat or nested in row-major order."},
        },
    },
    "V2RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
    },
    "V2InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2RequestInput"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2RequestOutput"}},
        },
    },
    "V2ResponseOutput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "parameters": _PARAMETERS,
            "data": {},
        },
    },
    "V2InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2ResponseOutput"}},
        },
    },
    "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
}

def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


_STATISTICS = _object(
    model_stats={
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "version", "inference_count", "execution_count", "inference_stats", "batch_stats"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "last_inference": {"type": "integer"},
                "inference_count": {"type": "integer"},
                "execution_count": {"type": "integer"},
                "inference_stats": {"type": "object"},
                "batch_stats": {"type": "array", "items": {"type": "object"}},
            },
        },
    }
)

_OPERATIONS: dict[str, Any] = {
    "all_statistics": lambda _: ("Statistics of every model (the statistics extension)", {"200": _STATISTICS}, None),
    "model_statistics": lambda label: (f"Statistics of model {label}", {"200": _STATISTICS}, None),
    "server_metadata": lambda _: ("Server metadata", {"200": _ref("V2ServerMetadata")}, None),
    "server_live": lambda _: ("Server liveness", {"200": _object(live={"type": "boolean"})}, None),
    "server_ready": lambda _: (
        "Server readiness: 200 when every model is ready, 400 otherwise",
        {
            "200": _object(ready={"type": "boolean"}),
            "400": {**_object(ready={"type": "boolean"}), "properties": {
                "ready": {"type": "boolean"}, "error": {"type": "string"},
            }},
        },
        None,
    ),
    "model_metadata": lambda label: (f"Metadata of model {label}", {"200": _ref("V2ModelMetadata")}, None),
    "model_ready": lambda label: (
        f"Readiness of model {label}: 200 when ready, 400 otherwise",
        {
            "200": _object(name={"type": "string"}, ready={"type": "boolean"}),
            "400": {
                "type": "object",
                "required": ["ready"],
                "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}, "error": {"type": "string"}},
            },
        },
        None,
    ),
    "model_infer": lambda label: (
        f"Inference with model {label}",
        {"200": _ref("V2InferenceResponse")},
        _ref("V2InferenceRequest"),
    ),
}


def v2_operation(kind: str, label: str = "") -> Operation:
    """The operation of a V2 endpoint: ``kind`` is one of the keys of ``_OPERATIONS``, ``label`` names the
    model (and version) for a model's endpoint."""
    summary, bodies, request = _OPERATIONS[kind](label)
    responses = {
        status: {"description": "OK." if status == "200" else "Not ready.", "content": {_JSON: {"schema": schema}}}
        for status, schema in bodies.items()
    }
    if request is None:
        return Operation(tag=V2_TAG, summary=summary, responses=responses, components=SCHEMAS)
    binary = {"schema": {"type": "string", "format": "binary"}}
    content = {_JSON: {"schema": request}, "application/octet-stream": binary}
    return Operation(
        tag=V2_TAG, summary=summary, responses=responses, request=content, errors=MODEL_ERRORS, components=SCHEMAS
    )
