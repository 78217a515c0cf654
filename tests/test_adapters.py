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


class TestFalconAdapterOnYourApp(AdapterConformance):
    """On a falcon app passed in, every request goes through falcon's router (no dictionary in front)."""

    def make_adapter(self) -> WebFramework:
        import falcon

        return FalconFramework(falcon.App())


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


# -- falcon: your own resources and middleware beside Mest's routes ------------------------------------------


class _Greeting:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"hello": "world"}


class _Tagging:
    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        resp.set_header("X-Seen-By", "middleware")


def _app_on(framework: FalconFramework) -> Any:
    from mest import Mest
    from mest.testing import TestClient

    return TestClient(Mest(web_framework=framework, metrics_path=None, access_log=False))


@pytest.mark.parametrize("passed_in", [False, True], ids=["own-app", "passed-in-app"])
def test_falcon_serves_your_resources_beside_mests(passed_in: bool) -> None:
    import falcon

    framework = FalconFramework(falcon.App()) if passed_in else FalconFramework()
    framework.app.add_route("/greeting", _Greeting())
    client = _app_on(framework)
    assert client.get("/greeting").json() == {"hello": "world"}
    live = client.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_middleware_of_a_falcon_app_you_pass_in_applies_to_mests_routes() -> None:
    import falcon

    client = _app_on(FalconFramework(falcon.App(middleware=[_Tagging()])))
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.headers.get("x-seen-by") == "middleware"
