"""OpenAI-compatible routes for the predictors that declare them (``openai_api``), so the official ``openai``
client and the tools built on it talk to a Mest model unchanged.

    GET  /v1/models              the declaring models
    POST /v1/chat/completions    ``openai_api`` includes ``"chat"``; ``stream`` false or true
    POST /v1/completions         ``"completions"``; ``stream`` false or true
    POST /v1/embeddings          ``"embeddings"``; each input is one queued call, so inputs batch together

The predictor's contract stays Mest's: ``pre_process`` receives the OpenAI request body (a dict; for
embeddings, one input string), ``post_process`` returns the completion text, or an iterator of text pieces
(streamed as ``delta`` chunks), or for embeddings one vector. A predictor may put
``{"prompt_tokens": P, "completion_tokens": C}`` in ``req.context["usage"]``; otherwise completion tokens are
counted as pieces. Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with
Mest's request id added. docs/streaming.md describes all of it.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..api import Request, Response
from ..batching import Arrival
from ..codecs import json, sse
from ..endpoints import Endpoint, Responder
from ..errors import BadRequest, MestError, NotFound
from ..pipeline import Pipeline, is_stream, read_body
from ._openapi import openai_operation

__all__ = ["KINDS", "OpenAIEndpoints", "declared_kinds", "error_body"]

logger = logging.getLogger("mest")

#: What ``openai_api`` may list.
KINDS = ("chat", "completions", "embeddings")
_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
_MAX_INPUTS = 2048  # OpenAI's own limit on inputs per embeddings request
_END = object()
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error"}



def declared_kinds(predictor: Any) -> tuple[str, ...]:
    """The OpenAI APIs a predictor declares with ``openai_api`` (a name or a tuple of names).

    Raises:
        ValueError: An unknown API name.
    """
    declared = getattr(predictor, "openai_api", None) or ()
    kinds = (declared,) if isinstance(declared, str) else tuple(declared)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(
            f"{type(predictor).__name__}.openai_api has unknown API(s) {unknown}: use some of {list(KINDS)}, "
            "for example openai_api = ('chat', 'completions')"
        )
    return kinds


def error_body(error: MestError, request_id: str) -> dict[str, Any]:
    """OpenAI's error shape for a Mest error."""
    status = int(error.status)
    code = "model_not_found" if isinstance(error, NotFound) else error.code
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    param = error.detail.get("param") if isinstance(error.detail, dict) else None
    return {"error": {"message": error.message, "type": kind, "param": param, "code": code, "request_id": request_id}}


def _error_response(error: MestError, req: Request) -> Response:
    status = int(error.status)
    if status >= 500:  # what Mest logs for every 5xx, with the request id
        logger.error(
            "%d %s in %s %s [request_id=%s]", status, error.message, req.method, req.path, req.request_id,
            exc_info=error.__cause__ or error, extra={"request_id": req.request_id},
        )
    return Response(error_body(error, req.request_id), status, error.headers)


def _openai_errors(handler: Responder) -> Responder:
    def endpoint(req: Request) -> Response:
        try:
            return handler(req)
        except MestError as error:
            return _error_response(error, req)

    return endpoint


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _END) -> Any:
    """A body field of the given type; ``None`` counts as absent for a field with a default."""
    value = body.get(name)
    if value is None:
        if default is _END:
            raise BadRequest(f"Missing required parameter: {name!r}.", detail={"param": name})
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadRequest(f"Invalid type for {name!r}.", detail={"param": name})
    return value


def _parse(req: Request) -> dict[str, Any]:
    raw = read_body(req)
    if not raw:
        raise BadRequest("The request body is empty; send a JSON object.")
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _usage(req: Request, pieces: int) -> dict[str, int]:
    given = req.context.get("usage") or {}
    prompt = int(given.get("prompt_tokens", 0))
    completion = int(given.get("completion_tokens", pieces))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _piece(item: Any) -> tuple[str, str | None]:
    """(text, finish_reason) of one item ``post_process`` produced."""
    if isinstance(item, dict):
        return str(item.get("text", "")), item.get("finish_reason")
    return (item if isinstance(item, str) else str(item)), None


def _close(items: Any) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _sse_json(obj: Any) -> bytes:
    return sse.sse_event(json.dumps(obj).decode("utf-8"))


def _sse_error(error: MestError, request_id: str) -> bytes:
    return _sse_json(error_body(error, request_id))


class OpenAIEndpoints:
    """The OpenAI routes of one app; they appear with the first predictor that declares each API.

    Args:
        pipelines: Every registration, looked up per request (a model is named by the body's ``model``).
    """

    def __init__(self, pipelines: Callable[[], Sequence[Pipeline]]) -> None:
        self._pipelines = pipelines
        self._served: set[str] = set()
        self._created = int(time.time())

    def new_endpoints(self, pipeline: Pipeline) -> list[Endpoint]:
        """The routes a new registration needs that are not served yet (``[]`` when it declares none)."""
        kinds = declared_kinds(pipeline.predictor)
        found: list[Endpoint] = []
        if kinds and "models" not in self._served:
            self._served.add("models")
            found.append(Endpoint("GET", "/v1/models", _openai_errors(self.models),
                                  operation=openai_operation("GET", "/v1/models")))
        handlers = {"chat": self.chat, "completions": self.completions, "embeddings": self.embeddings}
        for kind in kinds:
            if kind not in self._served:
                self._served.add(kind)
                found.append(Endpoint("POST", _PATHS[kind], _openai_errors(handlers[kind]),
                                      operation=openai_operation("POST", _PATHS[kind])))
        return found

    # -- models ----------------------------------------------------------------------------------------

    def _declaring(self, kind: str | None = None) -> list[Pipeline]:
        return [
            p for p in self._pipelines()
            if (kinds := declared_kinds(p.predictor)) and (kind is None or kind in kinds)
        ]

    def _model(self, body: dict[str, Any], kind: str) -> Pipeline:
        name = _field(body, "model", str)
        from .v2 import default_version

        same = [p for p in self._declaring(kind) if p.config.name == name]
        if not same:
            served = sorted({p.config.name for p in self._declaring(kind)})
            raise NotFound(
                f"The model {name[:128]!r} does not exist or does not serve this API; models: {served}.",
                detail={"param": "model"},
            )
        return default_version(same)

    def models(self, req: Request) -> Response:
        names = dict.fromkeys(p.config.name for p in self._declaring())
        data = [{"id": name, "object": "model", "created": self._created, "owned_by": "mest"} for name in names]
        return Response({"object": "list", "data": data})

    # -- completions -----------------------------------------------------------------------------------

    def chat(self, req: Request) -> Response:
        body = _parse(req)
        messages = _field(body, "messages", list)
        if not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise BadRequest(
                "'messages' must be a non-empty list of {role, content} objects.", detail={"param": "messages"}
            )
        return self._complete(req, body, "chat")

    def completions(self, req: Request) -> Response:
        body = _parse(req)
        prompt = _field(body, "prompt", (str, list))
        if isinstance(prompt, list) and not (len(prompt) == 1 and isinstance(prompt[0], str)):
            raise BadRequest("'prompt' must be a string (or a list of one string).", detail={"param": "prompt"})
        return self._complete(req, body, "completions")

    def _complete(self, req: Request, body: dict[str, Any], kind: str) -> Response:
        started = time.perf_counter()
        stream = _field(body, "stream", bool, False)
        if _field(body, "n", int, 1) != 1:
            raise BadRequest("Only n=1 is supported: one choice per request.", detail={"param": "n"})
        pipeline = self._model(body, kind)
        result = pipeline.predict(body, req)
        if isinstance(result, Response):  # the predictor chose its own answer
            return result
        completion_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + req.request_id
        shape = _Shape(kind, completion_id, pipeline.config.name)
        items: Iterator[Any] = result if is_stream(result) else iter((result,))
        if not stream:
            try:
                texts, finish = [], "stop"
                for item in items:
                    text, reason = _piece(item)
                    if text:
                        texts.append(text)
                    finish = reason or finish
            finally:
                _close(items)
            return Response(shape.whole("".join(texts), finish, _usage(req, len(texts))))
        return pipeline.open_stream(
            shape.chunks(items, req), req, started=started, encode=_sse_json,
            content_type=sse.content_type("sse"), error_event=_sse_error, trailer=b"data: [DONE]\n\n",
        )

    # -- embeddings ------------------------------------------------------------------------------------

    def embeddings(self, req: Request) -> Response:
        body = _parse(req)
        raw = _field(body, "input", (str, list))
        inputs = [raw] if isinstance(raw, str) else raw
        if not inputs or len(inputs) > _MAX_INPUTS or not all(isinstance(i, str) and i for i in inputs):
            raise BadRequest(
                f"'input' must be a non-empty string or a list of 1 to {_MAX_INPUTS} non-empty strings "
                "(token arrays are not supported).", detail={"param": "input"},
            )
        encoding = _field(body, "encoding_format", str, "float")
        if encoding not in ("float", "base64"):
            raise BadRequest("'encoding_format' must be 'float' or 'base64'.", detail={"param": "encoding_format"})
        dimensions = _field(body, "dimensions", int, None)
        if dimensions is not None and dimensions < 1:
            raise BadRequest("'dimensions' must be a positive integer.", detail={"param": "dimensions"})
        pipeline = self._model(body, "embeddings")
        vectors = _embed_all(pipeline, inputs, req)
        data = []
        for index, vector in enumerate(vectors):
            array = _sized(np.asarray(vector, dtype=np.float32).reshape(-1), dimensions, pipeline)
            embedding: Any = array.tolist() if encoding == "float" else base64.b64encode(
                array.astype("<f4").tobytes()
            ).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        prompt = int((req.context.get("usage") or {}).get("prompt_tokens", 0))
        return Response({
            "object": "list", "data": data, "model": pipeline.config.name,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        })


def _sized(vector: np.ndarray, dimensions: int | None, pipeline: Pipeline) -> np.ndarray:
    """The vector at the asked size: truncated and re-normalized where the predictor declares it may be
    (``openai_dimensions = True``, Matryoshka-trained models); otherwise only its own size is accepted."""
    if dimensions is None or dimensions == vector.shape[0]:
        return vector
    if not getattr(pipeline.predictor, "openai_dimensions", False) or dimensions > vector.shape[0]:
        raise BadRequest(
            f"Model {pipeline.config.name!r} does not support dimensions={dimensions} "
            f"(its embeddings have {vector.shape[0]}).", detail={"param": "dimensions"},
        )
    cut = vector[:dimensions]
    norm = float(np.linalg.norm(cut))
    return cut / norm if norm > 0 else cut


def _embed_all(pipeline: Pipeline, inputs: list[str], req: Request) -> list[Any]:
    """One queued call per input, in waves of the model's batch size, so one request's inputs (and other
    requests') share ``infer`` calls. Each wave is announced to the batcher before any of it is submitted, so
    the batch being formed waits for the whole wave. Threads are gevent's greenlets under a gevent worker."""
    results: list[Any] = [None] * len(inputs)
    errors: list[BaseException] = []
    wave = max(1, pipeline.config.max_batch_size)

    def run(index: int, arrival: Arrival) -> None:
        try:
            results[index] = pipeline.predict(inputs[index], req, arrival=arrival)
        except BaseException as exc:  # re-raised in the request's own thread
            errors.append(exc)

    for start in range(0, len(inputs), wave):
        indexes = range(start, min(start + wave, len(inputs)))
        # Leaving the block withdraws whatever of the wave did not reach the queue (a helper not started).
        with pipeline.batcher.arrival(len(indexes)) as arrival:
            helpers: list[threading.Thread] = []
            for index in indexes[1:]:
                helper = threading.Thread(target=run, args=(index, arrival), daemon=True)
                helper.start()
                helpers.append(helper)
            run(start, arrival)
            for helper in helpers:
                helper.join()
        if errors:
            raise errors[0]
    return results


class _Shape:
    """The JSON of one completion (chat or legacy), whole or as stream chunks."""

    def __init__(self, kind: str, completion_id: str, model: str) -> None:
        self.kind = kind
        self.id = completion_id
        self.model = model
        self.created = int(time.time())

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def whole(self, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
        if self.kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                      "logprobs": None}
            return {**self._envelope("chat.completion", [choice]), "usage": usage}
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return {**self._envelope("text_completion", [choice]), "usage": usage}

    def _chunk(self, delta: dict[str, Any] | str, finish: str | None) -> dict[str, Any]:
        if self.kind == "chat":
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return self._envelope("chat.completion.chunk", [choice])
        choice = {"index": 0, "text": delta, "finish_reason": finish, "logprobs": None}
        return self._envelope("text_completion", [choice])

    def chunks(self, items: Iterator[Any], req: Request) -> Iterator[dict[str, Any]]:
        """The stream's chunks: the role first (chat), one per piece, then ``finish_reason`` with ``usage``.
        The first piece is produced before anything is yielded, so a failure before it is an HTTP error."""
        try:
            first = next(items, _END)
            if self.kind == "chat":
                yield self._chunk({"role": "assistant", "content": ""}, None)
            count, finish = 0, "stop"
            pending = [] if first is _END else [first]
            for item in _chain(pending, items):
                text, reason = _piece(item)
                finish = reason or finish
                if text:  # an item carrying only a finish_reason is no piece
                    count += 1
                    yield self._chunk({"content": text} if self.kind == "chat" else text, None)
            last = self._chunk({} if self.kind == "chat" else "", finish)
            last["usage"] = _usage(req, count)
            yield last
        finally:
            _close(items)


def _chain(first: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from first
    if first:
        yield from rest
