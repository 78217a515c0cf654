"""The seam between Mest and a web framework.

An adapter does exactly two things: put Mest's endpoints on its router, and translate its native request and
response to and from :mod:`mest.api`. The responders it receives already turn every error into a JSON response
with a request id, render the body to bytes and set ``Content-Type``, so an adapter never serializes,
never catches, and can be written in an afternoon. Why this shape: framework objects never leak into
predictors, the pipeline or the tests, and swapping falcon for anything else changes one file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..endpoints import Responder

__all__ = ["Responder", "WSGIApplication", "WebFramework"]

#: PEP 3333 application.
WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WebFramework:
    """Base class of web-framework adapters; pass one as ``Mest(web_framework=...)``.

    On the app's first request Mest calls :meth:`add_route` once per (method, path) and
    :meth:`set_fallback` once, then serves through :meth:`wsgi_app` (routes registered later are added as they
    come). An adapter that leaves a method unimplemented can still be constructed and passed to ``Mest``;
    serving with it raises ``NotImplementedError`` naming the method.

    The rules an adapter keeps (each one broke a real adapter; ``mest.testing.AdapterConformance`` checks them):

    * **Every method on a known path reaches Mest.** Mest answers 405 with ``Allow``, HEAD and CORS
      preflights itself, so a framework that answers OPTIONS or 405 on its own (Flask's automatic OPTIONS)
      would skip Mest's CORS checks and its JSON errors.
    * **Paths are literal.** ``:``, ``(``, ``*``, ``;`` and ``@`` are legal in Mest routes; an adapter matches
      them exactly, never as route syntax (Bottle reads ``:name`` and ``*`` as wildcards, which would serve
      one model's route for another path).
    * **``add_route`` may come after ``wsgi_app()``**, from a serving thread: extensions (the model
      repository) register routes while the app serves, and those must be served at once.
    * **The framework adds no headers of its own**, and sends a HEAD answer's ``Content-Length`` as given:
      Mest's responses are complete (content type, length, request id, CORS), and a second ``Content-Type``
      or a recomputed zero length for HEAD breaks clients.

    A responder may return a :class:`~mest.api.StreamingResponse` (a streaming predictor's answer): its ``body``
    is an iterable of ``bytes`` that the adapter must hand to the WSGI server *as it is*, without joining it
    and without a ``Content-Length``, so each piece is sent when produced and the server calls its
    ``close()`` at the end or on a disconnect (:func:`mest.webframeworks.wsgi.start_wsgi_response` does it).

    Paths are exact (no templates): Mest expands everything it serves into concrete paths, so a dictionary is
    a sufficient router. Build each :class:`~mest.api.Request` with the body left unread (pass ``stream`` and
    ``content_length``) so Mest can refuse an oversized body before reading it;
    :func:`mest.webframeworks.wsgi.request_from_environ` does that for any WSGI environ.
    """

    def add_route(self, method: str, path: str, responder: Responder) -> None:
        """Serve ``responder`` for requests with this method and exact path."""
        raise NotImplementedError(f"{type(self).__name__}.add_route is not implemented")

    def set_fallback(self, responder: Responder) -> None:
        """Serve ``responder`` for every request no route matches (it answers 404 or 405 itself)."""
        raise NotImplementedError(f"{type(self).__name__}.set_fallback is not implemented")

    def wsgi_app(self) -> WSGIApplication:
        """The WSGI application that serves the routes; Mest's own ``__call__`` delegates to it."""
        raise NotImplementedError(f"{type(self).__name__}.wsgi_app is not implemented")
