"""The OpenAPI 3.1 document of everything an app serves, built by walking its endpoints.

Each endpoint carries its own :class:`~mest.endpoints.Operation` (whoever made the endpoint wrote it); this
module only completes them the same way: operation ids, the ``X-Request-ID`` header on every response, the one
JSON error body of :func:`mest.errors.error_body` on every error, pydantic models as JSON Schema 2020-12
(which OpenAPI 3.1 uses as it is), and the security requirement when API keys are on.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._version import __version__
from ..api import Request, Response
from ..codecs import json
from ..endpoints import Endpoint, Operation

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = ["DocumentSource", "OpenAPIEndpoint", "build_spec"]

OPENAPI_VERSION = "3.1.0"
_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/MestError"}
_VALIDATION_ERROR = {"$ref": "#/components/schemas/MestValidationError"}
_REQUEST_ID = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
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


#: Tags in the order the docs page shows them (an endpoint's own tag not listed here comes after them).
_TAGS = (
    ("models", "The predictors' own routes."),
    ("Open Inference Protocol (V2)", "The Open Inference Protocol (KServe V2) REST API of every model."),
    ("openai", "OpenAI-compatible routes of the models that declare openai_api."),
    ("health", "Liveness and readiness probes."),
    ("service", "Metrics and documentation."),
)


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


class _Builder:
    """One document: each endpoint's own :class:`~mest.endpoints.Operation`, completed the same way."""

    def __init__(self, endpoints: Sequence[Endpoint], source: DocumentSource) -> None:
        self.endpoints = [e for e in endpoints if e.documented and e.method != "OPTIONS"]
        self.source = source
        self.schemas: dict[str, Any] = dict(_COMPONENTS)
        self.operation_ids: set[str] = set()
        self.pydantic: dict[int, dict[str, Any]] = {}

    def collect_pydantic(self) -> None:
        """Turn every declared pydantic model into JSON Schema at once, so shared models become one component."""
        entries: list[tuple[int, Literal["validation", "serialization"], TypeAdapter[Any]]] = []
        for endpoint in self.endpoints:
            op = endpoint.operation
            if op is None:
                continue
            if op.request_model is not None:
                entries.append((id(op.request_model), "validation", op.request_model))
            if op.response_model is not None:
                entries.append((id(op.response_model), "serialization", op.response_model))
        if not entries:
            return
        from pydantic import TypeAdapter

        by_key, top = TypeAdapter.json_schemas(entries, ref_template="#/components/schemas/{model}")
        for (key, _mode), schema in by_key.items():
            self.pydantic[key] = schema
        self.schemas.update(top.get("$defs", {}))

    def operation(self, endpoint: Endpoint) -> dict[str, Any]:
        op = endpoint.operation
        fields = self.generic(endpoint.method) if op is None else self.complete(op)
        fields["operationId"] = _operation_id(endpoint.method, endpoint.path, self.operation_ids)
        if self.source.secured and not self.source.is_public(endpoint.path):
            fields["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
            fields["responses"].setdefault("401", _error_response("Missing or wrong API key."))
        return fields

    def complete(self, op: Operation) -> dict[str, Any]:
        self.schemas.update(op.components)
        request_schema = self.pydantic.get(id(op.request_model), {}) if op.request_model is not None else None
        responses: dict[str, Any] = {}
        for status, response in op.responses.items():
            responses[status] = {**response, "headers": _REQUEST_ID}
        if op.response_model is not None and _JSON in responses.get("200", {}).get("content", {}):
            content = dict(responses["200"]["content"])
            content[_JSON] = {"schema": self.pydantic.get(id(op.response_model), {})}
            responses["200"] = {**responses["200"], "content": content}
        error = dict(op.error_schema) if op.error_schema is not None else _ERROR
        for status, description in op.errors.items():
            validation = status == "422" and request_schema
            responses.setdefault(status, _error_response(description, _VALIDATION_ERROR if validation else error))
        responses["default"] = _error_response(op.default_error, error)
        fields: dict[str, Any] = {"tags": [op.tag], "summary": op.summary}
        if op.description:
            fields["description"] = op.description
        if op.request is not None:
            content = {}
            for media_type, entry in op.request.items():
                if request_schema is not None and json.is_json(media_type.lower()):
                    entry = {**entry, "schema": request_schema}
                content[media_type] = dict(entry)
            fields["requestBody"] = {"required": True, "content": content}
        fields["responses"] = responses
        return fields

    def generic(self, method: str) -> dict[str, Any]:
        op: dict[str, Any] = {"responses": {"200": _ok("OK.", _JSON, {}), "default": _error_response("Error.")}}
        if method in ("POST", "PUT", "PATCH"):
            op["requestBody"] = {"content": {_JSON: {"schema": {}}}}
        return op

    def build(self) -> dict[str, Any]:
        self.collect_pydantic()
        paths: dict[str, dict[str, Any]] = {}
        for endpoint in self.endpoints:
            paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = self.operation(endpoint)
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
        if self.source.secured:
            components["securitySchemes"] = {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
        used = {tag for ops in paths.values() for op in ops.values() for tag in op.get("tags", ())}
        known = [name for name, _ in _TAGS]
        tags = [{"name": name, "description": text} for name, text in _TAGS if name in used]
        tags += [{"name": name} for name in sorted(used) if name not in known]
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": self.source.title,
                "version": __version__,
                "description": f"Served by Mest {__version__}. Every response carries an X-Request-ID header.",
            },
            "tags": tags,
            "paths": paths,
            "components": components,
        }


@dataclass(frozen=True)
class DocumentSource:
    """What the document is built from; given by the app, so this package never sees the ``Mest`` object.

    Attributes:
        endpoints: The endpoints served now, in registration order (HEAD twins of GET routes left out).
        title: The API's title.
        secured: Whether API keys are on.
        is_public: Whether a path is served without a key.
    """

    endpoints: Callable[[], Sequence[Endpoint]]
    title: str = "Mest"
    secured: bool = False
    is_public: Callable[[str], bool] = lambda path: True


def build_spec(source: DocumentSource) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented endpoint ``source`` gives."""
    return _Builder(source.endpoints(), source).build()


class OpenAPIEndpoint:
    """``GET /openapi.json``: the document, built once and rebuilt only when endpoints are added."""

    def __init__(self, source: DocumentSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._cached: tuple[int, bytes] | None = None

    def __call__(self, req: Request) -> Response:
        count = len(self._source.endpoints())
        cached = self._cached
        if cached is None or cached[0] != count:
            with self._lock:
                cached = self._cached
                if cached is None or cached[0] != count:
                    cached = self._cached = (count, json.dumps(build_spec(self._source)))
        return Response(cached[1], headers=[("Content-Type", _JSON)])
