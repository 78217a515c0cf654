"""The checks of ``Mest.add_inference_handler``: the predictor, the route, the model's name and the queueing
arguments, all before anything is registered.

Why at registration: a mistake fails where the user wrote it, at start-up, with a message that shows the
corrected code (as LitServe's "Correct usage:" examples), not on the first request in production.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from typing import Any

from .predictors import PredictorBase
from .protocol import openai, v2
from .settings import ROUTE_RE

__all__ = ["check_registration", "derive_name"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_CORRECT_USAGE = """
Correct usage:

    class MyPredictor(PredictorBase):
        def pre_process(self, input_data, req): ...
        def infer(self, processed_data): ...
        def post_process(self, prediction, req): ...

    app.add_inference_handler(MyPredictor(), "/api/v1/predict")"""


def check_registration(
    predictor: Any,
    route: Any,
    *,
    name: Any,
    version: Any,
    max_batch_size: Any,
    max_batch_delay_ms: Any,
    max_queue: Any,
    timeout_s: Any,
    routes: Container[str],
    models: Iterable[tuple[str, str | None, str]],
) -> str:
    """Check the arguments of ``add_inference_handler`` and return the model's name (given, or derived).

    Args:
        routes: The paths already served.
        models: ``(name, version, route)`` of every registered model.

    Raises:
        TypeError: ``predictor`` is not a usable predictor (the message shows the correct usage).
        ValueError: An invalid or taken route, name or version, or an invalid queueing argument.
    """
    _check_predictor(predictor)
    _check_route(route, routes)
    name = derive_name(route) if name is None else name
    _check_name(name, version, models)
    _check_queueing(max_batch_size, max_batch_delay_ms, max_queue, timeout_s)
    return str(name)


def derive_name(route: str) -> str:
    """The model name for a route registered without one: its path segments joined by ``-``."""
    name = "-".join(segment for segment in route.strip("/").split("/") if segment)
    return re.sub(r"[^A-Za-z0-9._-]", "-", name) or "root"


def _check_predictor(predictor: Any) -> None:
    if isinstance(predictor, type):
        raise TypeError(
            f"add_inference_handler() got the class {predictor.__name__}, not an instance: "
            f"pass {predictor.__name__}() instead.{_CORRECT_USAGE}"
        )
    missing = [m for m in ("pre_process", "infer", "post_process") if not callable(getattr(predictor, m, None))]
    if missing:
        raise TypeError(
            f"{type(predictor).__name__} is not a predictor: it has no {', '.join(missing)} method(s). "
            f"Subclass mest.predictors.PredictorBase.{_CORRECT_USAGE}"
        )
    if type(predictor).infer is PredictorBase.infer:
        raise TypeError(f"{type(predictor).__name__} must implement infer(self, processed_data).{_CORRECT_USAGE}")
    v2.declared_tensors(predictor, "inputs")  # the protocols' declarations, checked before anything is registered
    v2.declared_tensors(predictor, "outputs")
    openai.declared_kinds(predictor)


def _check_route(route: Any, routes: Container[str]) -> None:
    if not isinstance(route, str) or not ROUTE_RE.fullmatch(route):
        raise ValueError(
            f"Invalid route {route!r}: use an absolute path of URL-safe segments, like '/api/v1/predict'."
        )
    if route in routes:
        raise ValueError(f"Route {route!r} is already registered; each route serves one handler.")


def _check_name(name: Any, version: Any, models: Iterable[tuple[str, str | None, str]]) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"Invalid model name {name!r}: use letters, digits, '.', '_' or '-' (max 128).")
    if name in v2.RESERVED_NAMES:
        raise ValueError(
            f"The model name {name!r} is taken by the Open Inference Protocol's own paths (/v2/models/{name}); "
            "pass another name=."
        )
    if version is not None and (not isinstance(version, str) or not _NAME_RE.fullmatch(version)):
        raise ValueError(f"Invalid model version {version!r}: use letters, digits, '.', '_' or '-'.")
    for other_name, other_version, other_route in models:
        if (other_name, other_version) == (name, version):
            label = name if version is None else f"{name} version {version}"
            raise ValueError(f"A model named {label!r} is already registered at {other_route!r}.")


def _check_queueing(max_batch_size: Any, max_batch_delay_ms: Any, max_queue: Any, timeout_s: Any) -> None:
    if not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
    if max_batch_delay_ms < 0:
        raise ValueError(f"max_batch_delay_ms must be >= 0, got {max_batch_delay_ms!r}")
    if max_queue is not None and (not isinstance(max_queue, int) or max_queue < 1):
        raise ValueError(f"max_queue must be an integer >= 1 or None, got {max_queue!r}")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s!r}")
