"""What every endpoint gets around it: a request id, the body limit, access control, error translation, a
rendered body, metrics and an access-log line.

Kept apart from the registry (``app.py``) because it is the per-request hot path: everything it can decide
once per endpoint (the access checks, the observer, the hooks) is decided when the endpoint is wrapped, so the
function that runs per request does only what each request needs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from time import perf_counter

from ._connection import CLOSE, DRAIN_SECONDS, drain_limit
from .api import Request, Response
from .codecs.body import encode_body
from .endpoints import Endpoint, Responder
from .errors import MestError, error_body
from .observability import Observability, RepeatFilter, fault_key, new_request_id
from .security import AccessPolicy, After

__all__ = ["EndpointWrapper"]

logger = logging.getLogger("mest")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def _complete(req: Request, response: Response, after: After | None, drain_bytes: int) -> None:
    """What every answer gets once its responder is done: the unread body drained (or the connection closed,
    so an early answer reaches the client), CORS headers, the request id, and no body for HEAD."""
    if not req.finish_body(drain_bytes, DRAIN_SECONDS):
        response.headers.append(CLOSE)
    if after is not None:
        after(req, response)
    response.headers.append(("X-Request-ID", req.request_id))
    if req.method == "HEAD":  # the headers of the GET answer, with its length, and no body
        response.headers.append(("Content-Length", str(len(response.body))))
        response.body = b""


class EndpointWrapper:
    """Wraps endpoints with the app's request handling.

    Args:
        max_body_size: The body limit every request gets.
        access: API keys and CORS.
        observability: Metrics and access logs.
        hooks: Called with each request to a model's endpoint, after access control (the live list: hooks
            added later apply too).
    """

    def __init__(
        self,
        max_body_size: int,
        access: AccessPolicy,
        observability: Observability,
        hooks: Sequence[Callable[[Request], None]],
    ) -> None:
        self._max_body_size = max_body_size
        self._drain_bytes = drain_limit(max_body_size)
        self._access = access
        self._observability = observability
        self._hooks = hooks
        self._repeats = RepeatFilter()

    def wrap(self, endpoint: Endpoint | None, responder: Responder) -> Responder:
        """``responder`` answering ``endpoint`` (``None``: the not-found fallback), wrapped."""
        path = endpoint.path if endpoint is not None else None
        method = endpoint.method if endpoint is not None else None
        model = endpoint.model if endpoint is not None else None
        max_body_size = self._max_body_size
        drain_bytes = self._drain_bytes
        # Decided once here; both are None (nothing runs per request) unless api_keys or cors_origins is set.
        before = self._access.before(path)
        after = self._access.after()
        observer = self._observability.endpoint(method, path, model)  # None with metrics and access log off
        hooks = self._hooks if endpoint is not None and endpoint.model is not None else ()
        failed = self._failed

        def wrapped(req: Request) -> Response:
            started = perf_counter()
            if observer is not None:
                observer.begin()
            client_id = req.headers.get("x-request-id")
            req.request_id = (
                client_id if client_id and _REQUEST_ID_RE.fullmatch(client_id) else new_request_id()
            )
            req.max_body_size = max_body_size
            try:
                early = before(req) if before is not None else None
                if early is None:
                    for hook in hooks:
                        hook(req)
                response = early if early is not None else responder(req)
                encode_body(response)
            except MestError as error:
                response = failed(error, req, path)
            except Exception as exc:
                self._log_fault(logging.ERROR, "unhandled error", req, path, exc, exc_info=exc)
                response = failed(MestError("Internal server error."), req, path, logged=True)
            except BaseException:  # the worker is being stopped (SystemExit, GreenletExit): no response
                if observer is not None:
                    observer.abort()
                raise
            _complete(req, response, after, drain_bytes)
            if observer is not None:
                observer.end(req, response, perf_counter() - started)
            return response

        return wrapped

    def _failed(self, error: MestError, req: Request, path: str | None, *, logged: bool = False) -> Response:
        """The error's JSON answer; a 5xx is logged (once per kind, repeats counted) unless it already was."""
        status = int(error.status)
        if status >= 500 and not logged:
            cause = error.__cause__
            text = f"{status} {error.message}"
            if cause is not None or status == 500:
                self._log_fault(logging.ERROR, text, req, path, error, exc_info=cause or error)
            else:
                self._log_fault(logging.WARNING, text, req, path, error)
        response = Response(error_body(error, req.request_id), status, error.headers)
        encode_body(response)
        return response

    def _log_fault(
        self, level: int, text: str, req: Request, path: str | None, error: BaseException,
        exc_info: BaseException | None = None,
    ) -> None:
        """Log a server fault: the first of its kind in full, repeats counted (observability/_repeats.py)."""
        repeats = self._repeats.check(fault_key(path, error))
        if repeats is None:
            return
        extra = {"request_id": req.request_id}
        if repeats == 0:
            logger.log(
                level, "%s in %s %s [request_id=%s]", text, req.method, req.path, req.request_id,
                exc_info=exc_info, extra=extra,
            )
        else:
            logger.log(
                level, "%s in %s %s [request_id=%s]: %d times since it was last logged (not logged each time; "
                "the metrics count every one)", text, req.method, req.path, req.request_id, repeats, extra=extra,
            )
