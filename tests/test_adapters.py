"""Mest's own adapters pass the adapter conformance suite it ships (mest.testing.AdapterConformance)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from mest.testing import AdapterConformance
from mest.webframeworks import WebFramework, WSGIApplication
from mest.webframeworks.falcon import FalconFramework
from mest.webframeworks.wsgi import PlainWSGI, request_from_environ, start_wsgi_response


class TestFalconAdapter(AdapterConformance):
    def make_adapter(self) -> WebFramework:
        return FalconFramework()


class TestPlainWSGIAdapter(AdapterConformance):
    def make_adapter(self) -> WebFramework:
        return PlainWSGI()


# -- the suite fails adapters that break a rule -------------------------------------------------------------

class _AddsAHeader(PlainWSGI):
    def wsgi_app(self) -> WSGIApplication:
        inner = super().wsgi_app()

        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            return inner(environ, lambda status, headers, *a: start_response(status, [*headers, ("X-Powered-By", "x")]))

        return application


class _GlobRouter(PlainWSGI):
    """Matches routes as patterns, as a framework with route syntax would: '*' matches anything."""

    def wsgi_app(self) -> WSGIApplication:
        routes, fallback = self._routes, self._fallback
        assert fallback is not None

        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = request_from_environ(environ)
            handler = next(
                (h for (m, p), h in routes.items() if m == request.method and fnmatch.fnmatchcase(request.path, p)),
                fallback,
            )
            return start_wsgi_response(handler(request), start_response)

        return application


@pytest.mark.parametrize(
    ("adapter", "rule"),
    [(_AddsAHeader, "test_the_framework_adds_no_headers_of_its_own"), (_GlobRouter, "test_paths_are_literal")],
)
def test_the_suite_fails_an_adapter_that_breaks_a_rule(adapter: type[WebFramework], rule: str) -> None:
    class Suite(AdapterConformance):
        def make_adapter(self) -> WebFramework:
            return adapter()

    with pytest.raises(AssertionError):
        getattr(Suite(), rule)()
