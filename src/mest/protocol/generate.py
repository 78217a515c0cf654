"""Triton's generate extension: ``POST /v2/models/NAME[/versions/V]/generate`` and ``.../generate_stream``.

The request is a flat JSON object (``{"text_input": "...", "parameters": {...}}``), handed to the predictor's
``pre_process`` as it is; the answer is a flat JSON object with ``model_name`` and ``model_version``. What
``post_process`` returns becomes the answer's fields: a ``dict`` is merged in, anything else is sent as
``text_output``. ``generate_stream`` sends one SSE ``data:`` event per item of a streaming predictor (one
event for a non-streaming one); ``generate`` joins a stream into one answer (text pieces concatenated), so
both work with any predictor. Triton's clients read a failed stream's last event as ``{"error": "..."}``,
which is what Mest's error body is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from ..api import Request, Response
from ..codecs import json, sse
from ..endpoints import Endpoint
from ..errors import BadRequest, MestError, error_body
from ..pipeline import Pipeline, is_stream, read_body
from ._openapi import generate_operation

__all__ = ["join_items", "model_endpoints"]



def _answer(item: Any, pipeline: Pipeline) -> dict[str, Any]:
    fields = dict(item) if isinstance(item, dict) else {"text_output": item}
    fields["model_name"] = pipeline.config.name
    fields["model_version"] = pipeline.config.version or ""
    return fields


def join_items(items: Iterator[Any]) -> Any:
    """One answer from a stream's items: ``str`` items (or ``str`` fields of ``dict`` items) concatenated,
    other fields the last value seen."""
    joined: dict[str, Any] = {}
    text: list[str] = []
    for item in items:
        if isinstance(item, dict):
            for key, value in item.items():
                previous = joined.get(key)
                joined[key] = previous + value if isinstance(previous, str) and isinstance(value, str) else value
        else:
            text.append(item if isinstance(item, str) else json.dumps(item).decode("utf-8"))
    if text:
        joined["text_output"] = joined.get("text_output", "") + "".join(text)
    return joined


def _event(pipeline: Pipeline, item: Any) -> bytes:
    return sse.sse_event(json.dumps(_answer(item, pipeline)).decode("utf-8"))


def _error_event(error: MestError, request_id: str) -> bytes:
    return sse.sse_event(json.dumps(error_body(error, request_id)).decode("utf-8"))


class _Generate:
    """The two endpoints of one model path, pinned to a registration or following the default version."""

    def __init__(self, resolve: Callable[[], Pipeline]) -> None:
        self._resolve = resolve

    def _run(self, req: Request) -> tuple[Pipeline, Any]:
        body = read_body(req)
        if not body:
            raise BadRequest("The request body is empty; send a JSON object such as {\"text_input\": \"...\"}.")
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise BadRequest("A generate request is a JSON object such as {\"text_input\": \"...\"}.")
        pipeline = self._resolve()
        return pipeline, pipeline.predict(payload, req)

    def generate(self, req: Request) -> Response:
        pipeline, result = self._run(req)
        if isinstance(result, Response):
            return result
        if is_stream(result):
            items = result
            try:
                result = join_items(items)
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
        return Response(_answer(result, pipeline))

    def generate_stream(self, req: Request) -> Response:
        started = time.perf_counter()
        pipeline, result = self._run(req)
        if isinstance(result, Response):
            return result
        items = result if is_stream(result) else iter((result,))
        return pipeline.open_stream(
            items, req, started=started, encode=partial(_event, pipeline),
            content_type=sse.content_type("sse"), error_event=_error_event,
        )


def model_endpoints(pipeline: Pipeline, pipelines: Callable[[], Sequence[Pipeline]]) -> list[Endpoint]:
    """The generate endpoints of a newly registered model.

    Args:
        pipeline: The new registration.
        pipelines: Every registration (this one included), for the version-less paths, which serve the
            default version of the name when a request arrives.
    """
    from .v2 import default_version

    name, version = pipeline.config.name, pipeline.config.version
    found: list[tuple[str, str | None, _Generate]] = []
    if version is not None:
        found.append((f"/v2/models/{name}/versions/{version}", version, _Generate(lambda: pipeline)))
    if [p for p in pipelines() if p.config.name == name] in ([], [pipeline]):

        def resolve() -> Pipeline:
            return default_version([p for p in pipelines() if p.config.name == name])

        found.append((f"/v2/models/{name}", None, _Generate(resolve)))
    endpoints: list[Endpoint] = []
    for base, pinned, responders in found:
        label = name if pinned is None else f"{name} version {pinned}"
        for suffix, responder, streaming in (
            ("generate", responders.generate, False), ("generate_stream", responders.generate_stream, True)
        ):
            endpoints.append(Endpoint(
                "POST", f"{base}/{suffix}", responder, model=name, version=pinned,
                operation=generate_operation(label, streaming=streaming),
            ))
    return endpoints
