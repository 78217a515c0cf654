"""Bodies with a declared shape: JSON validated by pydantic on the way in and on the way out.

A predictor opts in with ``request_schema`` / ``response_schema`` (see :class:`mest.predictors.PredictorBase`);
this module is imported only then, so apps without schemas never load pydantic.
"""

from __future__ import annotations

from typing import Any

import pydantic

from ..errors import BadRequest, InferenceError, UnprocessableEntity
from . import json

__all__ = ["Schema", "field_errors"]

_CORRECT_USAGE = """
Correct usage:

    from pydantic import BaseModel

    class IrisRequest(BaseModel):
        features: list[list[float]]

    class MyPredictor(PredictorBase):
        request_schema = IrisRequest          # pre_process receives an IrisRequest
        response_schema = IrisResponse        # or a type such as dict[str, list[float]]"""


def field_errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as ``[{"loc": [...], "msg": ..., "type": ...}]``, without echoing the input."""
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


class Schema:
    """One declared body type: a pydantic model, or any type pydantic's ``TypeAdapter`` accepts.

    Args:
        declared: The type.
        owner: The predictor class, for error messages.
        attribute: ``"request_schema"`` or ``"response_schema"``, for error messages.

    Raises:
        TypeError: ``declared`` is not something pydantic can validate (the message shows correct usage).
    """

    __slots__ = ("_model", "adapter", "declared")

    def __init__(self, declared: Any, owner: str, attribute: str) -> None:
        if isinstance(declared, pydantic.BaseModel):
            raise TypeError(
                f"{owner}.{attribute} is an instance of {type(declared).__name__}; declare the class itself."
                f"{_CORRECT_USAGE}"
            )
        try:
            self.adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(declared)
        except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
            raise TypeError(
                f"{owner}.{attribute} = {declared!r} is not a type pydantic can validate.{_CORRECT_USAGE}"
            ) from exc
        self.declared = declared
        model = declared if isinstance(declared, type) and issubclass(declared, pydantic.BaseModel) else None
        self._model: type[pydantic.BaseModel] | None = model

    def decode(self, body: bytes) -> Any:
        """Parse and validate a request body.

        Raises:
            BadRequest: The body is not JSON.
            UnprocessableEntity: It is JSON of the wrong shape; ``detail`` lists the field errors.
        """
        try:
            return self.adapter.validate_json(body)
        except pydantic.ValidationError as exc:
            errors = field_errors(exc)
            if errors and errors[0]["type"] == "json_invalid":
                raise BadRequest(f"Malformed JSON: {errors[0]['msg']}") from None
            raise UnprocessableEntity(
                "The request body does not match the schema of this endpoint.", detail=errors
            ) from None

    def encode(self, value: Any) -> bytes:
        """Validate ``post_process``'s result and serialize it as JSON.

        An instance of the declared model is serialized as it is; anything else (dicts, numpy arrays) is
        converted to JSON first and validated against the declared type.

        Raises:
            InferenceError: The result does not match the declared type (the client sees a plain 500; the
                log gets the field errors).
        """
        if self._model is not None and isinstance(value, self._model):
            return self._with_nonfinite(value, value.model_dump_json(by_alias=True).encode("utf-8"))
        try:
            validated = self.adapter.validate_json(json.dumps(value))
        except pydantic.ValidationError as exc:
            # The cause names the fields but not their values: logs never carry response data.
            cause = ValueError(f"post_process's result does not match response_schema: {field_errors(exc)}")
            raise InferenceError("post_process returned a response that does not match response_schema.") from cause
        except TypeError as exc:
            raise InferenceError("post_process returned a response that does not match response_schema.") from exc
        return self._with_nonfinite(validated, self.adapter.dump_json(validated, by_alias=True))

    def _with_nonfinite(self, value: Any, encoded: bytes) -> bytes:
        """pydantic writes NaN and infinities as ``null``; Mest writes its tokens (see :mod:`mest.codecs.json`).
        Checked only when the document has a ``null`` at all."""
        if b"null" not in encoded:
            return encoded
        plain = self.adapter.dump_python(value, by_alias=True)
        if not json.has_nonfinite(plain):
            return encoded
        try:
            return json.dumps(plain)
        except TypeError:  # a type only pydantic's JSON mode can write: keep its document
            return encoded
