"""The user's contract: a predictor turns one request into one response in three steps.

``pre_process(input_data, req)`` → ``infer(processed_data)`` → ``post_process(prediction, req)``. Mest owns
everything around those three calls (decoding, batching, errors, metrics), so predictor code stays business
logic only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from .api import Request
from .models import BaseModel
from .tensors import TensorSpec

__all__ = ["BasePredictor", "PredictorBase"]


class PredictorBase:
    """Base class of every predictor.

    Subclasses override ``infer`` and usually ``pre_process`` and ``post_process``. Overriding ``__init__``
    without calling ``super().__init__()`` is fine (the seed README's example does it).

    Args:
        model: Optional artifacts. When given, the default :meth:`setup` loads them once per worker process
            and stores the loaded object as ``self.model``.

    Attributes:
        content_types: Request media types this predictor accepts. JSON types are decoded into Python
            objects; any other listed type (for example ``"image/png"`` or ``"text/plain"``) is handed to
            ``pre_process`` as raw ``bytes``.
        inputs: Optional declaration of the input tensors (:class:`~mest.tensors.TensorSpec`): reported as
            Open Inference Protocol model metadata, and V2 requests are checked against it (400 naming the
            input otherwise). ``None``: any well-formed V2 request is accepted.
        outputs: Optional declaration of the output tensors: model metadata, and a single returned array
            is sent as the single declared output. ``None``: outputs are described from what is returned.
        example: Optional example input, as a client would send it to the predictor's route (a JSON-able
            value, or ``bytes`` for a non-JSON content type). ``mest check`` runs it end to end and fails if
            it does not answer 2xx; a class attribute, or a property when it must be computed.
        request_schema: Optional shape of the request body on the predictor's route: a pydantic model (or
            any type pydantic's ``TypeAdapter`` accepts). The JSON body is validated before ``pre_process``
            (422 with field-level errors otherwise) and ``pre_process`` receives the validated object.
            Published in ``/openapi.json``. See docs/schemas-openapi.md.
        response_schema: Optional shape of what ``post_process`` returns: the result is validated and
            serialized with it (a mismatch is a 500, logged with the fields at fault). A returned
            :class:`~mest.api.Response` is sent as it is. Published in ``/openapi.json``.
        stream_format: When ``post_process`` returns an iterator (a generator), its items are streamed as
            they are produced: ``"sse"`` (Server-Sent Events) or ``"ndjson"`` fixes the format; ``None`` (the
            default) lets the client's ``Accept`` header choose (NDJSON if it asks for
            ``application/x-ndjson``, else SSE). See docs/streaming.md.
        openai_api: OpenAI-compatible routes this predictor serves, by the body's ``model`` (its name):
            any of ``"chat"`` (``/v1/chat/completions``), ``"completions"`` (``/v1/completions``) and
            ``"embeddings"`` (``/v1/embeddings``); empty (the default): none. See docs/streaming.md.
        openai_dimensions: For ``"embeddings"``: the model's vectors may be truncated to the request's
            ``dimensions`` (and re-normalized), as for Matryoshka-trained models. Default ``False``.
    """

    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    inputs: ClassVar[Sequence[TensorSpec] | None] = None
    outputs: ClassVar[Sequence[TensorSpec] | None] = None
    example: Any = None
    request_schema: ClassVar[Any] = None
    response_schema: ClassVar[Any] = None
    stream_format: ClassVar[str | None] = None
    openai_api: ClassVar[str | tuple[str, ...]] = ()
    openai_dimensions: ClassVar[bool] = False

    def __init__(self, model: BaseModel | None = None) -> None:
        self.artifacts = model
        self.model: Any = None

    def setup(self) -> None:
        """Prepare for serving; runs once per worker process before that worker's first request.

        Why here and not in ``__init__``: under gunicorn the app is imported before workers fork, and heavy
        models (GPU contexts, thread pools) must be created in the process that uses them. The default loads
        the artifacts given to the constructor, if any. A raised exception leaves the model not ready: its
        route answers 503 and ``/health/ready`` reports why, while the process stays up.
        """
        artifacts = getattr(self, "artifacts", None)
        if artifacts is not None and getattr(self, "model", None) is None:
            self.model = artifacts.load()

    def pre_process(self, input_data: Any, req: Request) -> Any:
        """Turn the decoded request body into what ``infer`` takes. Default: pass it through.

        Raising ``KeyError``, ``IndexError``, ``TypeError`` or ``ValueError`` here answers 400 (the input is not
        what the predictor can process); raise a :mod:`mest.errors` exception to choose another status.
        """
        return input_data

    def infer(self, processed_data: Any) -> Any:
        """Run the model. With batching on, receives a list and must return a list of the same length."""
        raise NotImplementedError(f"{type(self).__name__}.infer")

    def post_process(self, prediction: Any, req: Request) -> Any:
        """Turn the prediction into the response: a :class:`mest.api.Response`, anything JSON-serializable,
        or an iterator (a generator) whose items are streamed to the client as they come (docs/streaming.md)."""
        return prediction


BasePredictor = PredictorBase
