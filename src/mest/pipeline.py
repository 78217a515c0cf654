"""One request through a predictor: decode → ``pre_process`` → queue/batch → ``infer`` → ``post_process``.

This is where exceptions from user code are translated into Mest errors (the "translate at the boundary"
rule): a failing ``pre_process`` means the input was unusable (4xx), a failing ``infer`` or ``post_process``
is a server fault (500). The pipeline knows nothing of the web framework that runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from ._process import PROCESS
from .api import BodyIncomplete, BodyTooLarge, Request, Response
from .batching import Answer, Arrival, Batcher
from .codecs import json, sse
from .errors import (
    BadRequest,
    GatewayTimeout,
    InferenceError,
    MestError,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from .predictors import PredictorBase
from .streaming import ItemStream, StreamObserver, error_event_for, streaming_response

if TYPE_CHECKING:
    from .codecs.schema import Schema

__all__ = ["ModelConfig", "Pipeline", "StageObserver", "is_stream", "new_queue", "read_body"]

logger = logging.getLogger("mest.pipeline")

# Exceptions that, raised by pre_process, mean "this input is not what the predictor can process".
_INPUT_ERRORS = (KeyError, IndexError, TypeError, ValueError)
# What post_process returns most often, none of them a stream: is_stream answers for them without the ABC check.
_PLAIN = frozenset({dict, list, tuple, str, bytes, bytearray, int, float, bool, type(None)})
_perf_counter = time.perf_counter
_JSON = json.JSON_CONTENT_TYPE


class StageObserver(Protocol):
    """Receives what the pipeline alone knows (for metrics, see :mod:`mest.observability`)."""

    def stage_finished(self, stage: str, seconds: float) -> None:
        """``pre_process`` or ``post_process`` of one request took ``seconds``."""

    def batch_ran(self, size: int, queue_waits: Sequence[float], infer_seconds: float, queue_depth: int) -> None:
        """A batch of ``size`` requests ran (once per batch, reported by the request whose thread ran it): how
        long each waited in the queue, how long ``infer`` took, how many requests it left waiting."""

    def rejected(self, reason: str) -> None:
        """A request got no answer from the model: ``timeout`` (504), ``not_ready`` or ``queue_full`` (503)."""

    def failed(self, stage: str) -> None:
        """A request failed in ``pre_process`` (its input), ``infer`` or ``post_process`` (called only then)."""

    def setup_finished(self, ready: bool) -> None:
        """The predictor's ``setup`` ran in this process."""


@dataclass(frozen=True)
class ModelConfig:
    """How one registered model is served: its route, name and version, batching and time limits (from
    ``add_inference_handler``'s arguments)."""

    route: str
    name: str
    version: str | None = None
    max_batch_size: int = 1
    max_batch_delay_ms: float = 5.0
    max_queue: int | None = None
    timeout_s: float | None = None
    #: Longest a streamed response may last (``Settings.stream_time_limit_s``); ``None``: no limit.
    stream_time_limit_s: float | None = None


def is_stream(result: Any) -> bool:
    """Whether ``post_process`` returned a stream: an iterator (a generator, typically), never a value that
    merely is iterable (a list, a dict, a string, an array)."""
    if type(result) in _PLAIN:
        return False
    return isinstance(result, Iterator) and not isinstance(result, (str, bytes, bytearray, dict))


def new_queue(predictor: PredictorBase, config: ModelConfig) -> Batcher:
    """The model queue in front of ``predictor.infer`` that ``config`` asks for.

    Made before its pipeline when something else needs it first (the app gives the metrics its depth)."""
    return Batcher(
        predictor.infer,
        max_batch_size=config.max_batch_size,
        max_batch_delay_s=config.max_batch_delay_ms / 1000.0,
        max_queue=config.max_queue,
    )


def read_body(req: Request) -> bytes:
    """The request body, with an oversized one reported as 413."""
    try:
        return req.body
    except BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc).capitalize() + ".") from exc
    except BodyIncomplete as exc:
        if exc.timed_out:
            raise RequestTimeout(str(exc).capitalize() + ".") from exc
        raise BadRequest(str(exc).capitalize() + ".") from exc


def _schema(predictor: PredictorBase, attribute: str) -> Schema | None:
    declared = getattr(predictor, attribute, None)
    if declared is None:
        return None
    from .codecs.schema import Schema

    return Schema(declared, type(predictor).__name__, attribute)


def _describe_input_error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"Invalid input: missing key {exc.args[0]!r}." if exc.args else "Invalid input: missing key."
    text = str(exc) or type(exc).__name__
    return f"Invalid input: {text}"


class Pipeline:
    """Serves one registered predictor.

    Calling the pipeline with a :class:`~mest.api.Request` is the endpoint of the predictor's own route; the
    Open Inference Protocol endpoints reuse :meth:`predict` with their own decoding and encoding.

    Args:
        predictor: The user's predictor.
        config: How it is served.
        queue: Its model queue (default: :func:`new_queue`).
        stage_observer: Told what only the pipeline knows, and what the queue answered (metrics).
        stream_observer: Told how streamed responses go.
    """

    def __init__(
        self,
        predictor: PredictorBase,
        config: ModelConfig,
        *,
        queue: Batcher | None = None,
        stage_observer: StageObserver | None = None,
        stream_observer: StreamObserver | None = None,
    ) -> None:
        self.predictor = predictor
        self.config = config
        self._observer = stage_observer
        self._stream_observer = stream_observer
        self.stream_format: sse.StreamFormat | None = getattr(predictor, "stream_format", None)
        if self.stream_format not in (None, "sse", "ndjson"):
            raise ValueError(
                f"{type(predictor).__name__}.stream_format must be 'sse', 'ndjson' or None, "
                f"got {self.stream_format!r}"
            )
        self.request_schema = _schema(predictor, "request_schema")
        self.response_schema = _schema(predictor, "response_schema")
        accepted = tuple(t.lower() for t in getattr(predictor, "content_types", ("application/json",)))
        self._accepts_json = any(json.is_json(t) for t in accepted)
        self._other_types = tuple(t for t in accepted if not json.is_json(t))
        self._setup_lock = threading.Lock()
        self._setup_pid: int | None = None
        self._setup_error: str | None = None
        self._ready_pid: int | None = None  # the pid whose setup succeeded: one comparison per request
        if self.request_schema is not None and not self._accepts_json:
            raise TypeError(
                f"{type(predictor).__name__} declares a request_schema but its content_types accept no JSON; "
                "add 'application/json' to content_types or remove request_schema."
            )
        self.batcher = queue if queue is not None else new_queue(predictor, config)
        self._timeout_s = config.timeout_s
        # Unbatched, nobody waits for announced requests: no arrival to enter and leave, straight to _run.
        self._predict: Callable[[Any, Request], Any] = self._announced if config.max_batch_size > 1 else self._run

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def is_ready(self) -> bool:
        """Whether ``setup`` finished successfully in this process."""
        return self._setup_pid == PROCESS.pid and self._setup_error is None

    @property
    def setup_error(self) -> str | None:
        """Why ``setup`` failed in this process, if it did."""
        return self._setup_error if self._setup_pid == PROCESS.pid else None

    def ensure_setup(self) -> bool:
        """Run the predictor's ``setup`` once in this process (again after a fork); return readiness."""
        pid = PROCESS.pid
        if self._setup_pid == pid:
            return self._setup_error is None
        with self._setup_lock:
            if self._setup_pid != pid:
                self._setup_error = self._run_setup()
                self._setup_pid = pid
                self._ready_pid = pid if self._setup_error is None else None
                if self._observer is not None:
                    self._observer.setup_finished(self._setup_error is None)
        return self._setup_error is None

    def _run_setup(self) -> str | None:
        setup: Callable[[], Any] | None = getattr(self.predictor, "setup", None)
        if setup is None:
            return None
        started = time.perf_counter()
        try:
            setup()
        except Exception as exc:
            logger.exception("setup of model %r failed; its route will answer 503", self.config.name)
            return f"{type(exc).__name__}: {exc}"
        logger.info(
            "model %r ready in %.1f ms (pid %d)",
            self.config.name,
            (time.perf_counter() - started) * 1000,
            PROCESS.pid,
        )
        return None

    # -- serving -------------------------------------------------------------------------------------

    def __call__(self, req: Request) -> Response:
        """The endpoint of the predictor's own route: JSON (or raw bytes) in, ``post_process`` result out
        (streamed, when it is an iterator)."""
        started = _perf_counter()
        if self._ready_pid != PROCESS.pid:
            self._require_ready()
        result = self._predict(self.decode(req), req)
        if isinstance(result, Response):
            return result
        if type(result) not in _PLAIN and is_stream(result):  # the type check: no call for plain results
            return self.open_stream(result, req, started=started)
        schema = self.response_schema
        if schema is None:
            return Response(result)
        return Response(schema.encode(result), headers=[("Content-Type", json.JSON_CONTENT_TYPE)])

    def open_stream(
        self,
        items: Iterator[Any],
        req: Request,
        *,
        started: float,
        encode: Callable[[Any], bytes] | None = None,
        content_type: str | None = None,
        error_event: Callable[[MestError, str], bytes] | None = None,
        trailer: bytes = b"",
    ) -> Response:
        """Send ``items`` as a stream; its first item is produced here, so a failure before it is an
        ordinary error response.

        Args:
            items: What ``post_process`` returned.
            req: The request (its ``Accept`` picks SSE or NDJSON unless the predictor chose).
            started: ``time.perf_counter()`` when the request arrived.
            encode: Frames one item (protocols frame their own); default SSE or NDJSON per item.
            content_type: The stream's ``Content-Type`` (required with ``encode``).
            error_event: Frames the event that ends a failed stream.
            trailer: Sent after the last item when the stream completes.

        Raises:
            MestError: The producer failed before its first item (``InferenceError`` for a non-Mest error).
        """
        if encode is None:
            fmt = sse.choose_format(req.headers.get("accept"), self.stream_format)
            encode = partial(sse.encode_item, fmt=fmt)
            content_type = sse.content_type(fmt)
            error_event = error_event or error_event_for(fmt)
        assert content_type is not None, "open_stream(encode=...) needs content_type"
        stream = ItemStream(
            items,
            encode,
            request_id=req.request_id,
            started=started,
            time_limit_s=self.config.stream_time_limit_s,
            error_event=error_event,
            trailer=trailer,
            observer=self._stream_observer,
            label=f"stream of model {self.config.name!r} ({req.method} {req.path})",
        )
        try:
            stream.prime()
        except MestError:
            raise
        except Exception as exc:
            raise InferenceError("post_process failed.") from exc
        return streaming_response(stream, content_type)

    def _require_ready(self) -> None:
        if not self.ensure_setup():
            if self._observer is not None:
                self._observer.rejected("not_ready")
            raise ServiceUnavailable(f"Model {self.config.name!r} is not ready: its setup failed.")

    def decode(self, req: Request) -> Any:
        """The body as ``pre_process`` receives it: parsed JSON, or raw bytes for a declared non-JSON type."""
        media_type = req.content_type
        if self._accepts_json and (media_type is None or media_type == _JSON or json.is_json(media_type)):
            body = read_body(req)
            if not body:
                raise BadRequest("The request body is empty; send a JSON document.")
            if self.request_schema is not None:
                return self.request_schema.decode(body)
            return json.loads(body)
        if media_type is not None and any(self._type_matches(media_type, t) for t in self._other_types):
            return read_body(req)
        if media_type is None and not self._accepts_json:
            return read_body(req)
        accepted = ", ".join(("application/json",) * self._accepts_json + self._other_types)
        raise UnsupportedMediaType(
            f"Unsupported content type {media_type!r}; this endpoint accepts: {accepted}."
        )

    @staticmethod
    def _type_matches(media_type: str, pattern: str) -> bool:
        if pattern.endswith("/*"):
            return media_type.startswith(pattern[:-1])
        return media_type == pattern or pattern == "*/*"

    def _failed(self, stage: str) -> None:
        if self._observer is not None:
            self._observer.failed(stage)

    def _rejected(self, reason: str) -> None:
        if self._observer is not None:
            self._observer.rejected(reason)

    def predict(self, input_data: Any, req: Request, *, arrival: Arrival | None = None) -> Any:
        """Run ``pre_process`` → ``infer`` (through the queue) → ``post_process`` and return the result.

        Args:
            input_data: What ``pre_process`` receives.
            req: The request.
            arrival: The caller's own :meth:`~mest.batching.Batcher.arrival` for this input, announced before
                it calls: a request with several inputs (OpenAI embeddings) announces them all before running
                any, so the batch being formed waits for all of them instead of leaving with the first.
        """
        if arrival is None:
            if self._ready_pid != PROCESS.pid:
                self._require_ready()
            return self._predict(input_data, req)
        # This input's share of the caller's announcement, withdrawn on any exit that does not reach the queue
        # (not ready, pre_process failed): the others' batch need not wait for it.
        with arrival.one() as own:
            if self._ready_pid != PROCESS.pid:
                self._require_ready()
            return self._run(input_data, req, own)

    def _announced(self, input_data: Any, req: Request) -> Any:
        """``_run`` for a batched model: announced while in ``pre_process``, so a batch being formed waits for
        it; withdrawn on any exit that does not reach the queue."""
        with self.batcher.arrival() as arrival:
            return self._run(input_data, req, arrival)

    def _run(self, input_data: Any, req: Request, arrival: Arrival | None = None) -> Any:
        timeout = self._timeout_s
        deadline = None if timeout is None else time.monotonic() + timeout
        observer = self._observer
        started = _perf_counter()
        try:
            processed = self.predictor.pre_process(input_data, req)
        except MestError:
            self._failed("pre_process")
            raise
        except _INPUT_ERRORS as exc:
            self._failed("pre_process")
            raise BadRequest(_describe_input_error(exc)) from exc
        if observer is not None:
            observer.stage_finished("pre_process", _perf_counter() - started)
        if deadline is not None and time.monotonic() >= deadline:
            self._rejected("timeout")
            raise GatewayTimeout("The request was not answered within its time limit.")
        prediction = self._through_queue(arrival, processed, deadline, req)
        started = _perf_counter()
        try:
            result = self.predictor.post_process(prediction, req)
        except MestError:
            self._failed("post_process")
            raise
        except Exception as exc:
            self._failed("post_process")
            raise InferenceError("post_process failed.") from exc
        if observer is not None:
            observer.stage_finished("post_process", _perf_counter() - started)
        return result

    def _through_queue(self, arrival: Arrival | None, processed: Any, deadline: float | None, req: Request) -> Any:
        """The input through the queue; what the queue answered is handed to the observer."""
        try:
            answer: Answer = self.batcher.answer(processed, deadline, arrival=arrival)
        except GatewayTimeout:  # expired in the queue
            self._rejected("timeout")
            raise
        except ServiceUnavailable:  # the queue is full
            self._rejected("queue_full")
            raise
        req.context["batch_size"] = answer.batch_size
        observer = self._observer
        if observer is not None and answer.queue_waits:
            observer.batch_ran(answer.batch_size, answer.queue_waits, answer.infer_seconds, answer.queue_depth)
        error = answer.error
        if error is not None:
            if isinstance(error, GatewayTimeout):  # answered after its deadline
                self._rejected("timeout")
            else:
                self._failed("infer")
            raise error
        return answer.result
