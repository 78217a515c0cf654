"""The OpenAPI 3.1 document of everything an app serves, built from its routes on the first request for it.

Predictor routes carry their pydantic ``request_schema``/``response_schema`` (as JSON Schema 2020-12, which
OpenAPI 3.1 uses as it is), V2 routes the protocol's types, and Mest's own endpoints their fixed shapes.
Every response documents the ``X-Request-ID`` header and every error the one JSON error body of
:func:`mest.errors.error_body`.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal

from ..api import Request, Response
from ..codecs import json
from ._docs import asset_paths
from ._protocols import OPENAI_TAG, STREAM_CONTENT, protocol_operation
from ._v2 import SCHEMAS as V2_SCHEMAS
from ._v2 import V2_TAG, v2_operation

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from ..app import Mest
    from ..pipeline import Pipeline

__all__ = ["OpenAPIEndpoint", "build_spec"]

OPENAPI_VERSION = "3.1.0"
_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/MestError"}
_REQUEST_ID = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
_PREDICT_ERRORS = {
    "400": "The body is malformed, or pre_process could not use it.",
    "413": "The body is larger than max_body_size.",
    "415": "The body's content type is not one the predictor accepts.",
    "422": "The body does not match the request schema (detail lists the fields).",
    "500": "The model or post_process failed (the server log has the traceback).",
    "503": "The model is not ready, or its queue is full (retry after Retry-After seconds).",
    "504": "The request was not answered within the handler's time limit.",
}
_COMPONENTS: dict[str, Any] = {
    "MestError": {
        "type": "object",
        "description": "The body of every error response.",
        "required": ["error", "code", "status", "request_id"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, safe to show."},
            "code": {"type": "string", "description": "A stable machine-readable name, e.g. not_found."},
            "status": {"type": "integer"},
            "request_id": {"type": "string"},
            "detail": {"description": "Details, when there are any (field errors for a 422)."},
        },
    },
    "MestFieldError": {
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    },
    "MestValidationError": {
        "allOf": [
            {"$ref": "#/components/schemas/MestError"},
            {
                "type": "object",
                "required": ["detail"],
                "properties": {"detail": {"type": "array", "items": {"$ref": "#/components/schemas/MestFieldError"}}},
            },
        ],
    },
}


#: Tags in the order the docs page shows them.
_TAGS = (
    ("models", "The predictors' own routes."),
    (V2_TAG, "The Open Inference Protocol (KServe V2) REST API of every model."),
    (OPENAI_TAG, "OpenAI-compatible routes of the models that declare openai_api."),
    ("health", "Liveness and readiness probes."),
    ("service", "Metrics and documentation."),
)


def _mest_version() -> str:
    try:
        return metadata.version("mest")
    except metadata.PackageNotFoundError:
        return "0"


def _operation_id(method: str, path: str, taken: set[str]) -> str:
    base = f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_') or 'root'}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _error_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {_JSON: {"schema": schema or _ERROR}}
    return {"description": description, "headers": _REQUEST_ID, "content": content}


def _ok(description: str, media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": _REQUEST_ID, "content": {media_type: {"schema": schema}}}


def _class_doc(obj: Any) -> str | None:
    doc = type(obj).__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


def _json_example(value: Any) -> Any:
    """The predictor's ``example`` if it is JSON (what Swagger UI pre-fills), else nothing."""
    if value is None or isinstance(value, (bytes, bytearray)):
        return None
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


class _Builder:
    def __init__(self, app: Mest) -> None:
        self.app = app
        self.settings = app.settings
        self.schemas: dict[str, Any] = dict(_COMPONENTS)
        self.uses_v2 = False
        self.operation_ids: set[str] = set()
        self.pydantic: dict[tuple[int, str], dict[str, Any]] = {}

    # -- pydantic schemas ------------------------------------------------------------------------------

    def collect_pydantic(self) -> None:
        """Turn every declared schema into JSON Schema at once, so shared models become one component."""
        entries: list[tuple[tuple[int, str], Literal["validation", "serialization"], TypeAdapter[Any]]] = []
        for pipeline in self.app.pipelines:
            modes: tuple[tuple[str, Literal["validation", "serialization"]], ...] = (
                ("request_schema", "validation"),
                ("response_schema", "serialization"),
            )
            for attribute, mode in modes:
                schema = getattr(pipeline, attribute, None)
                if schema is not None:
                    entries.append(((id(pipeline), attribute), mode, schema.adapter))
        if not entries:
            return
        from pydantic import TypeAdapter

        by_key, top = TypeAdapter.json_schemas(entries, ref_template="#/components/schemas/{model}")
        for (key, _mode), schema in by_key.items():
            self.pydantic[key] = schema
        self.schemas.update(top.get("$defs", {}))

    # -- operations -------------------------------------------------------------------------------------

    def operation(self, method: str, path: str) -> dict[str, Any]:
        settings = self.settings
        pipeline = self.app.model_of(path)
        if pipeline is not None and pipeline.config.route == path and method == "POST":
            op = self.predict(pipeline)
        elif path == settings.health_live_path:
            alive = {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}}
            op = self.simple("health", "Liveness: the process is up", {"200": _ok("Alive.", _JSON, alive)})
        elif path == settings.health_ready_path:
            op = self.ready()
        elif path == getattr(settings, "metrics_path", None):
            op = self.simple("service", "Prometheus metrics (text format; OpenMetrics when asked for)", {
                "200": _ok("The metrics.", "text/plain", {"type": "string"}),
            })
        elif path == getattr(settings, "openapi_path", None):
            op = self.simple("service", "This OpenAPI document", {
                "200": _ok("The document.", _JSON, {"type": "object"}),
            })
        elif path == getattr(settings, "docs_path", None):
            op = self.simple("service", "Interactive API documentation (Swagger UI)", {
                "200": _ok("The page.", "text/html", {"type": "string"}),
            })
        else:
            op = self.v2(method, path) or protocol_operation(method, path, _ERROR) or self.generic(method)
        op["operationId"] = _operation_id(method, path, self.operation_ids)
        self.add_security(op, path)
        return op

    def simple(self, tag: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
        return {"tags": [tag], "summary": summary, "responses": {**responses, "default": _error_response("Error.")}}

    def ready(self) -> dict[str, Any]:
        ready = {
            "type": "object",
            "required": ["status", "models"],
            "properties": {
                "status": {"const": "ready"},
                "models": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
        return self.simple("health", "Readiness: every model's setup succeeded", {
            "200": _ok("Ready; the state of each model.", _JSON, ready),
            "503": _error_response("A model is not ready (detail.models says which)."),
        })

    def predict(self, pipeline: Pipeline) -> dict[str, Any]:
        config = pipeline.config
        predictor = pipeline.predictor
        label = config.name if config.version is None else f"{config.name} version {config.version}"
        request = self.pydantic.get((id(pipeline), "request_schema"), {})
        response = self.pydantic.get((id(pipeline), "response_schema"), {})
        content: dict[str, Any] = {}
        for media_type in getattr(predictor, "content_types", (_JSON,)):
            if json.is_json(media_type.lower()):
                entry: dict[str, Any] = {"schema": request}
                example = _json_example(getattr(predictor, "example", None))
                if example is not None:
                    entry["example"] = example
                content[media_type] = entry
            else:
                content[media_type] = {"schema": {"type": "string", "format": "binary"}}
        responses: dict[str, Any] = {"200": _ok("The result of post_process.", _JSON, response)}
        post_process = getattr(type(predictor), "post_process", None)
        if getattr(predictor, "stream_format", None) or inspect.isgeneratorfunction(post_process):
            responses["200"]["content"].update(STREAM_CONTENT)  # a streaming predictor (docs/streaming.md)
        for status, description in _PREDICT_ERRORS.items():
            schema = {"$ref": "#/components/schemas/MestValidationError"} if status == "422" and request else _ERROR
            responses[status] = _error_response(description, schema)
        responses["default"] = _error_response("Another error raised by the predictor.")
        op: dict[str, Any] = {
            "tags": ["models"],
            "summary": f"Predict with model {label}",
            "requestBody": {"required": True, "content": content},
            "responses": responses,
        }
        doc = _class_doc(predictor)
        if doc:
            op["description"] = doc
        return op

    def v2(self, method: str, path: str) -> dict[str, Any] | None:
        found = v2_operation(method, path)
        if found is None:
            return None
        self.uses_v2 = True
        summary, bodies, request = found
        responses = {
            status: _ok("OK." if status == "200" else "Not ready.", _JSON, schema) for status, schema in bodies.items()
        }
        op: dict[str, Any] = {"tags": [V2_TAG], "summary": summary, "responses": responses}
        if request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    _JSON: {"schema": request},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
            for status, description in _PREDICT_ERRORS.items():
                responses.setdefault(status, _error_response(description))
        responses["default"] = _error_response("Error.")
        return op

    def generic(self, method: str) -> dict[str, Any]:
        op: dict[str, Any] = {"responses": {"200": _ok("OK.", _JSON, {}), "default": _error_response("Error.")}}
        if method in ("POST", "PUT", "PATCH"):
            op["requestBody"] = {"content": {_JSON: {"schema": {}}}}
        return op

    def add_security(self, op: dict[str, Any], path: str) -> None:
        if not getattr(self.settings, "api_keys", ()):
            return
        is_public: Callable[[str], bool] | None = getattr(self.app, "is_public", None)
        if is_public is not None and is_public(path):
            return
        op["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
        op["responses"].setdefault("401", _error_response("Missing or wrong API key."))

    # -- the document -----------------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        self.collect_pydantic()
        docs_path = getattr(self.settings, "docs_path", None)
        hidden = set(asset_paths(docs_path)) if docs_path else set()
        paths: dict[str, dict[str, Any]] = {}
        for method, path in self.app.routes():
            if path in hidden or method == "OPTIONS":
                continue
            paths.setdefault(path, {})[method.lower()] = self.operation(method, path)
        if self.uses_v2:
            self.schemas.update(V2_SCHEMAS)
        components: dict[str, Any] = {
            "schemas": self.schemas,
            "headers": {
                "X-Request-ID": {
                    "description": "The request's id: the client's X-Request-ID if valid, else a new one.",
                    "required": True,
                    "schema": {"type": "string"},
                },
            },
        }
        if getattr(self.settings, "api_keys", ()):
            components["securitySchemes"] = {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
        version = _mest_version()
        used = {tag for ops in paths.values() for op in ops.values() for tag in op.get("tags", ())}
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": getattr(self.settings, "title", "Mest"),
                "version": version,
                "description": f"Served by Mest {version}. Every response carries an X-Request-ID header.",
            },
            "tags": [{"name": name, "description": text} for name, text in _TAGS if name in used],
            "paths": paths,
            "components": components,
        }


def build_spec(app: Mest) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route ``app`` serves (documentation assets left out)."""
    return _Builder(app).build()


class OpenAPIEndpoint:
    """``GET /openapi.json``: the document, built once and rebuilt only when routes are added."""

    def __init__(self, app: Mest) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._cached: tuple[int, bytes] | None = None

    def __call__(self, req: Request) -> Response:
        count = len(self._app.routes())
        cached = self._cached
        if cached is None or cached[0] != count:
            with self._lock:
                cached = self._cached
                if cached is None or cached[0] != count:
                    cached = self._cached = (count, json.dumps(build_spec(self._app)))
        return Response(cached[1], headers=[("Content-Type", _JSON)])
