"""Open Inference Protocol (KServe V2) REST endpoints for every registered predictor.

The app registers what :func:`server_endpoints` and :func:`model_endpoints` return, as exact paths::

    GET  /v2                                      server metadata
    GET  /v2/health/live                          server liveness
    GET  /v2/health/ready                         server readiness (every model's setup succeeded)
    GET  /v2/models/NAME[/versions/VERSION]       model metadata
    GET  /v2/models/NAME[/versions/VERSION]/ready model readiness
    POST /v2/models/NAME[/versions/VERSION]/infer inference
    GET  /v2/models/stats                         statistics of every model (when metrics are on)
    GET  /v2/models/NAME[/versions/VERSION]/stats statistics of one model (see ``_v2_statistics``)

A path without a version serves the model's *default version*: the registration without a version if there
is one; otherwise the highest version when every version is an integer, else the version registered last.
It is looked up on each request, so registering a newer version moves the default. Unknown models and
versions match no path and get the app's 404, whose ``{"error": ...}`` body is what V2 clients expect.

An inference request is decoded into ``input_data = {input name: numpy array}`` and run through the
predictor's pipeline (``pre_process`` → queue/batch → ``infer`` → ``post_process``) exactly like a request to
its own route; the request's ``parameters`` are on ``req.context["parameters"]``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..api import Request, Response
from ..codecs import json
from ..codecs import v2 as codec
from ..endpoints import Endpoint
from ..errors import BadRequest, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType
from ..pipeline import read_body
from ..tensors import TensorSpec
from ._v2_openapi import v2_operation
from ._v2_statistics import statistics_document

if TYPE_CHECKING:
    from ..pipeline import Pipeline

__all__ = [
    "EXTENSIONS",
    "declared_tensors",
    "default_version",
    "model_endpoints",
    "not_found",
    "server_endpoints",
    "unknown_model_message",
]

#: The registered models' pipelines, in registration order, when asked.
Pipelines = Callable[[], Sequence["Pipeline"]]
#: Every model's totals by ``(name, version or "")`` (:meth:`mest.observability.Metrics.statistics`).
Statistics = Callable[[], Mapping[tuple[str, str], Any]]

#: The protocol extensions this server supports, as server metadata reports them (``statistics`` only while
#: metrics are collected).
EXTENSIONS = ("binary_tensor_data", "statistics")
_REPOSITORY_INDEX = "/v2/repository/index"
#: Model names the protocol's own paths take (``/v2/models/stats``).
RESERVED_NAMES = frozenset({"stats"})

_PLATFORM = "mest"
_HEADER_LENGTH = "inference-header-content-length"
_HEADER_LENGTH_RE = re.compile(r"[0-9]{1,20}")
_OCTET_STREAM = "application/octet-stream"
_WBITS = {"gzip": 31, "deflate": 15}  # HTTP's "deflate" is the zlib format

_CORRECT_USAGE = """
Correct usage:

    from mest.tensors import TensorSpec

    class MyPredictor(PredictorBase):
        inputs = [TensorSpec("features", "FP32", [-1, 4])]
        outputs = [TensorSpec("probability", "FP64", [-1, 3])]"""


def declared_tensors(predictor: Any, attribute: str) -> tuple[TensorSpec, ...] | None:
    """A predictor's ``inputs`` or ``outputs`` declaration, checked; ``None`` when it declares none.

    Raises:
        TypeError: The attribute is not a sequence of :class:`~mest.tensors.TensorSpec`.
        ValueError: Two tensors share a name.
    """
    value = getattr(predictor, attribute, None)
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(
        isinstance(spec, TensorSpec) for spec in value
    ):
        raise TypeError(
            f"{type(predictor).__name__}.{attribute} must be a list of mest.tensors.TensorSpec "
            f"(or None), got {value!r}.{_CORRECT_USAGE}"
        )
    specs = tuple(value)
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{type(predictor).__name__}.{attribute} declares {duplicates[0]!r} more than once.")
    return specs


# -- server endpoints ----------------------------------------------------------------------------------


def server_endpoints(
    pipelines: Pipelines, serves: Callable[[str, str], bool], statistics: Statistics | None = None
) -> list[Endpoint]:
    """Endpoints that exist once per app (``/v2``, ``/v2/health/*``, ``/v2/models/stats`` with statistics).

    Args:
        pipelines: The registered models.
        serves: Whether the app serves ``(method, path)`` now (the repository extension is listed in the
            server metadata once its endpoints are registered).
        statistics: Every model's totals; ``None`` (metrics off) leaves the statistics extension out.
    """
    extensions = [e for e in EXTENSIONS if e != "statistics" or statistics is not None]

    def server_metadata(req: Request) -> Response:
        served = [*extensions, *(["model_repository"] if serves("POST", _REPOSITORY_INDEX) else [])]
        return Response({"name": "mest", "version": __version__, "extensions": served})

    def live(req: Request) -> Response:
        return Response({"live": True})

    def ready(req: Request) -> Response:
        # The spec: 200 means ready, a 4xx means not ready (Triton answers 400 too).
        not_ready = [p.config for p in pipelines() if not p.ensure_setup()]
        if not not_ready:
            return Response({"ready": True})
        labels = ", ".join(_label(c.name, c.version) for c in not_ready)
        return Response({"ready": False, "error": f"Not ready: the setup of {labels} failed."}, status=400)

    def all_statistics(req: Request) -> Response:
        assert statistics is not None
        return Response(statistics_document(_registrations(pipelines()), statistics()))

    endpoints = [
        Endpoint("GET", "/v2", server_metadata, operation=v2_operation("server_metadata")),
        Endpoint("GET", "/v2/health/live", live, operation=v2_operation("server_live")),
        Endpoint("GET", "/v2/health/ready", ready, operation=v2_operation("server_ready")),
    ]
    if statistics is not None:
        endpoints.append(Endpoint("GET", "/v2/models/stats", all_statistics, operation=v2_operation("all_statistics")))
    return endpoints


def _registrations(pipelines: Sequence[Pipeline]) -> list[tuple[str, str | None, bool]]:
    return [(p.config.name, p.config.version, p.config.max_batch_size > 1) for p in pipelines]


def _label(name: str, version: str | None) -> str:
    return repr(name) if version is None else f"{name!r} version {version!r}"


# -- model endpoints -----------------------------------------------------------------------------------


def model_endpoints(
    pipelines: Pipelines, pipeline: Pipeline, statistics: Statistics | None = None
) -> list[Endpoint]:
    """Endpoints for one registered model (metadata, ready, infer, stats; with and without version).

    The versioned paths serve this registration. The unversioned paths are added with the first registration
    of a model name and serve whichever registration of that name is the default when a request arrives.

    Raises:
        TypeError: The predictor's ``inputs`` or ``outputs`` is not a list of TensorSpec.
        ValueError: A tensor is declared twice.
    """
    declared_tensors(pipeline.predictor, "inputs")
    declared_tensors(pipeline.predictor, "outputs")
    name, version = pipeline.config.name, pipeline.config.version
    endpoints: list[Endpoint] = []
    if version is not None:
        endpoints += _ModelEndpoints(pipelines, name, statistics, pinned=pipeline).endpoints(
            f"/v2/models/{name}/versions/{version}", version
        )
    if [p for p in pipelines() if p.config.name == name] in ([], [pipeline]):
        endpoints += _ModelEndpoints(pipelines, name, statistics).endpoints(f"/v2/models/{name}", None)
    return endpoints


def unknown_model_message(path: str, pipelines: Sequence[Pipeline]) -> str:
    """The 404 message for a ``/v2/models/...`` path that no registration serves: which part is unknown."""
    parts = path[len("/v2/models/"):].split("/")
    name = parts[0][:128]
    versions = [p.config.version for p in pipelines if p.config.name == name]
    # Triton's own wording: its clients and examples check for this prefix.
    if not versions:
        return f"Request for unknown model: '{name}' is not found"
    if len(parts) >= 2 and parts[1] == "versions" and len(parts) >= 3 and parts[2] not in versions:
        return f"Request for unknown model: '{name}' version {parts[2][:128]} is not found"
    return f"No V2 endpoint matches {path[:200]!r}."


def not_found(pipelines: Pipelines) -> tuple[str, Callable[[str], str]]:
    """The app's 404 wording for paths under ``/v2/models/``: which model or version is unknown."""
    return "/v2/models/", lambda path: unknown_model_message(path, pipelines())


def default_version(pipelines: Sequence[Pipeline]) -> Pipeline:
    """The registration a version-less path serves, among the registrations of one model name."""
    for pipeline in pipelines:
        if pipeline.config.version is None:
            return pipeline
    versions = [p.config.version or "" for p in pipelines]
    if all(v.isdecimal() for v in versions):
        return max(pipelines, key=lambda p: int(p.config.version or 0))
    return pipelines[-1]


class _ModelEndpoints:
    """The V2 endpoints of one model name, pinned to one registration or following the default version."""

    def __init__(
        self, pipelines: Pipelines, name: str, statistics: Statistics | None = None, pinned: Pipeline | None = None
    ) -> None:
        self._pipelines = pipelines
        self._name = name
        self._statistics = statistics
        self._pinned = pinned

    def endpoints(self, base: str, version: str | None) -> list[Endpoint]:
        """The endpoints under ``base``; ``version`` is the pinned registration's (``None``: the default's)."""
        label = self._name if version is None else f"{self._name} version {version}"
        kinds = [("GET", "", self.metadata, "model_metadata"), ("GET", "/ready", self.ready, "model_ready"),
                 ("POST", "/infer", self.infer, "model_infer")]
        if self._statistics is not None:
            kinds.append(("GET", "/stats", self.stats, "model_statistics"))
        return [
            Endpoint(method, base + suffix, responder, model=self._name, version=version,
                     operation=v2_operation(kind, label))
            for method, suffix, responder, kind in kinds
        ]

    def stats(self, req: Request) -> Response:
        """This version's statistics, or (unversioned path) those of every version of the model."""
        assert self._statistics is not None
        registrations = [self._pinned] if self._pinned is not None else self._registrations()
        return Response(statistics_document(_registrations(registrations), self._statistics()))

    def _registrations(self) -> list[Pipeline]:
        return [p for p in self._pipelines() if p.config.name == self._name]

    def _pipeline(self) -> Pipeline:
        return self._pinned if self._pinned is not None else default_version(self._registrations())

    def metadata(self, req: Request) -> Response:
        predictor = self._pipeline().predictor
        inputs = declared_tensors(predictor, "inputs") or ()
        outputs = declared_tensors(predictor, "outputs") or ()
        return Response(
            {
                "name": self._name,
                "versions": [p.config.version for p in self._registrations() if p.config.version is not None],
                "platform": _PLATFORM,
                "inputs": [spec.to_dict() for spec in inputs],
                "outputs": [spec.to_dict() for spec in outputs],
            }
        )

    def ready(self, req: Request) -> Response:
        pipeline = self._pipeline()
        if pipeline.ensure_setup():
            return Response({"name": self._name, "ready": True})
        label = _label(self._name, pipeline.config.version)
        return Response(
            {"name": self._name, "ready": False, "error": f"Model {label} is not ready: its setup failed."},
            status=400,
        )

    def infer(self, req: Request) -> Response:
        pipeline = self._pipeline()
        config = pipeline.config
        if not pipeline.ensure_setup():
            raise ServiceUnavailable(f"Model {_label(config.name, config.version)} is not ready: its setup failed.")
        predictor = pipeline.predictor
        declared_outputs = declared_tensors(predictor, "outputs")
        request = codec.decode_request(
            _body(req),
            _header_length(req),
            inputs=declared_tensors(predictor, "inputs"),
            outputs=declared_outputs,
        )
        req.context["parameters"] = request.parameters
        result = pipeline.predict(request.inputs, req)
        if isinstance(result, Response):  # post_process chose the whole HTTP response
            return result
        tensors = codec.outputs_from_result(result, declared_outputs)
        body, header_length = codec.encode_response(
            request, tensors, model_name=config.name, model_version=config.version
        )
        if header_length is None:
            return Response(body, headers=[("Content-Type", json.JSON_CONTENT_TYPE)])
        return Response(
            body,
            headers=[("Content-Type", _OCTET_STREAM), ("Inference-Header-Content-Length", str(header_length))],
        )


# -- request bodies --------------------------------------------------------------------------------------


def _header_length(req: Request) -> int | None:
    raw = req.headers.get(_HEADER_LENGTH)
    if raw is None:
        return None
    if not _HEADER_LENGTH_RE.fullmatch(raw.strip()):
        raise BadRequest(f"Inference-Header-Content-Length must be a byte count, got {raw[:40]!r}.")
    return int(raw)


def _body(req: Request) -> bytes:
    """The request body: JSON, or JSON followed by binary tensor data; gzip or deflate compressed or not."""
    media_type = req.content_type
    if media_type is not None and media_type != _OCTET_STREAM and not json.is_json(media_type):
        raise UnsupportedMediaType(
            f"Unsupported content type {media_type!r}; send application/json, or application/octet-stream "
            "with binary tensor data."
        )
    body = read_body(req)
    encoding = req.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _WBITS:
        raise UnsupportedMediaType(f"Unsupported Content-Encoding {encoding[:40]!r}; send gzip, deflate or none.")
    return _decompress(body, encoding, req.max_body_size)


def _decompress(body: bytes, encoding: str, limit: int | None) -> bytes:
    """Inflate a compressed body without ever holding more than ``limit + 1`` bytes of its output."""
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        data = inflater.decompress(body, 0 if limit is None else limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"The body is not valid {encoding} data.") from exc
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(f"The decompressed body is larger than the limit of {limit} bytes.")
    if not inflater.eof or inflater.unused_data:
        raise BadRequest(f"The {encoding} body is truncated or has trailing data.")
    return data

