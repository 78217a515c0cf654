"""API-key authentication and CORS, decided once per endpoint at registration and cheap per request.

Off by default: with no ``api_keys`` and no ``cors_origins`` the app adds no code at all to the request path.
With keys, every endpoint except the public ones (the health endpoints by default) requires
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; keys are compared with :func:`hmac.compare_digest`
and never appear in messages, logs or ``repr``. With CORS origins, preflight ``OPTIONS`` requests are answered
(before authentication: browsers never send credentials on a preflight) and responses to allowed origins carry
``Access-Control-Allow-Origin``. See docs/security.md.
"""

from __future__ import annotations

import fnmatch
import hmac
import re
from collections.abc import Callable, Collection, Iterable

from .api import Request, Response
from .errors import BadRequest, NotFound, Unauthorized

__all__ = ["AccessPolicy", "check_api_keys", "check_cors_origins", "check_public_paths"]

#: Open Inference Protocol health endpoints, public by default like Mest's own.
V2_HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, no spaces: fits a header and a comma-separated list
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\*$")
_ALLOW_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-ID"
_EXPOSE_HEADERS = "X-Request-ID, Retry-After"
_PREFLIGHT_MAX_AGE = "600"
_MISSING = (
    "Missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
)

#: Runs before an endpoint's handler: returns a response to send instead (a CORS preflight), raises a Mest
#: error (401), or returns ``None`` to let the handler run.
Before = Callable[[Request], "Response | None"]
#: Runs on every response of an endpoint (adds CORS headers).
After = Callable[[Request, Response], None]


def check_api_keys(keys: Iterable[str] | str) -> tuple[str, ...]:
    """Validate API keys and return them as a tuple. Messages never contain a key.

    Raises:
        ValueError: A key is empty, not a string, or contains spaces, commas or non-ASCII characters.
    """
    if isinstance(keys, str):
        raise ValueError("api_keys must be a list of keys, not a single string")
    result = tuple(keys)
    for index, key in enumerate(result):
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key) or "," in key:
            raise ValueError(
                f"api_keys[{index}] is not a valid key: use a non-empty string of visible ASCII characters "
                "without spaces or commas"
            )
    return result


def check_public_paths(paths: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Validate the public path patterns (``None``: the health endpoints)."""
    if paths is None:
        return None
    if isinstance(paths, str):
        raise ValueError("public_paths must be a list of paths, not a single string")
    result = tuple(paths)
    for path in result:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"public_paths entries must be paths starting with '/', got {path!r}")
    return result


def check_cors_origins(origins: Iterable[str] | str) -> tuple[str, ...]:
    """Validate CORS origins (``"*"`` or ``scheme://host[:port]``, no path)."""
    if isinstance(origins, str):
        raise ValueError("cors_origins must be a list of origins, not a single string")
    result = tuple(origins)
    for origin in result:
        if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin):
            raise ValueError(
                f"cors_origins entries must be '*' or like 'https://example.com[:port]', got {origin!r}"
            )
    return result


class AccessPolicy:
    """Who may call which endpoint, and the CORS headers of the answer.

    Args:
        api_keys: Accepted keys; empty switches authentication off.
        public_paths: ``fnmatch`` patterns of paths open without a key; ``None`` means ``health_paths``.
        cors_origins: Allowed browser origins; empty switches CORS off.
        health_paths: The app's health endpoints.
        methods_of: Returns the methods registered for a path (for preflight answers).
    """

    def __init__(
        self,
        *,
        api_keys: Collection[str],
        public_paths: Collection[str] | None,
        cors_origins: Collection[str],
        health_paths: Iterable[str | None],
        methods_of: Callable[[str], Collection[str]],
    ) -> None:
        self._keys = tuple(key.encode("ascii") for key in api_keys)
        if public_paths is None:
            public_paths = [p for p in (*health_paths, *V2_HEALTH_PATHS) if p]
        self._public = tuple(public_paths)
        self._any_origin = "*" in cors_origins
        self._origins = frozenset(cors_origins)
        self._methods_of = methods_of

    def __repr__(self) -> str:
        return (
            f"AccessPolicy(api_keys=<{len(self._keys)} hidden>, public_paths={self._public!r}, "
            f"cors_origins={sorted(self._origins)!r})"
        )

    @property
    def cors(self) -> bool:
        """Whether CORS is on."""
        return bool(self._origins)

    def is_public(self, path: str | None) -> bool:
        """Whether ``path`` is served without a key (``None``, the not-found fallback, never is)."""
        if not self._keys:
            return True
        return path is not None and any(fnmatch.fnmatchcase(path, pattern) for pattern in self._public)

    # -- hooks for one endpoint ------------------------------------------------------------------------

    def before(self, path: str | None) -> Before | None:
        """What runs before the handler of the endpoint at ``path`` (``None`` for the fallback), if anything."""
        check_key = not self.is_public(path)
        preflight = self.cors and path is None  # preflights never match a route: they reach the fallback
        if not check_key and not preflight:
            return None

        def before(req: Request) -> Response | None:
            if preflight and req.method == "OPTIONS" and "access-control-request-method" in req.headers:
                return self._preflight(req)
            if check_key:
                self.authenticate(req)
            return None

        return before

    def after(self) -> After | None:
        """What runs on every response (CORS headers), if anything."""
        return self._add_cors_headers if self.cors else None

    # -- the checks ------------------------------------------------------------------------------------

    def authenticate(self, req: Request) -> None:
        """Accept the request if it carries a valid key.

        Raises:
            Unauthorized: No key, or no configured key matches.
        """
        candidates: list[bytes] = []
        authorization = req.headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                candidates.append(token.strip().encode("utf-8", "surrogateescape"))
        api_key = req.headers.get("x-api-key")
        if api_key:
            candidates.append(api_key.strip().encode("utf-8", "surrogateescape"))
        if not candidates:
            raise Unauthorized(_MISSING, headers={"WWW-Authenticate": 'Bearer realm="mest"'})
        matched = False
        for candidate in candidates:
            for key in self._keys:
                # No early exit: the time taken does not depend on which key matched.
                matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise Unauthorized(
                "Invalid API key.", headers={"WWW-Authenticate": 'Bearer realm="mest", error="invalid_token"'}
            )

    def _allowed_origin(self, req: Request) -> str | None:
        origin = req.headers.get("origin")
        if origin is None:
            return None
        if self._any_origin:
            return "*"
        return origin if origin in self._origins else None

    def _preflight(self, req: Request) -> Response:
        methods = self._methods_of(req.path)
        if not methods:
            raise NotFound(f"No route matches {req.path[:200]!r}.")
        if self._allowed_origin(req) is None:
            raise BadRequest("CORS preflight from a disallowed origin.")
        requested = req.headers.get("access-control-request-method", "").upper()
        if requested not in methods:
            raise BadRequest(f"CORS preflight for a method this route does not serve: {requested[:20]!r}.")
        headers = [
            ("Access-Control-Allow-Methods", ", ".join(sorted(methods))),
            ("Access-Control-Allow-Headers", _ALLOW_HEADERS),
            ("Access-Control-Max-Age", _PREFLIGHT_MAX_AGE),
        ]
        return Response(None, 204, headers)

    def _add_cors_headers(self, req: Request, response: Response) -> None:
        allowed = self._allowed_origin(req)
        if allowed is None:
            return
        response.headers.append(("Access-Control-Allow-Origin", allowed))
        if allowed != "*":
            response.headers.append(("Vary", "Origin"))
        response.headers.append(("Access-Control-Expose-Headers", _EXPOSE_HEADERS))
