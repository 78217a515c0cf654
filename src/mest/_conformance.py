"""The rules a web-framework adapter must keep, as tests its author runs (``mest.testing.AdapterConformance``).

Each rule comes from a real adapter that broke it (a Flask and a Bottle adapter written from the README):
every method on a known path must reach Mest (Flask answers OPTIONS itself, which breaks CORS preflights);
paths are literal (``:``, ``(`` and ``*`` are legal in Mest routes and are wildcards in Bottle); ``add_route``
may come after ``wsgi_app()``, from a serving thread; the framework adds no headers of its own. The rules
are written in :mod:`mest.webframeworks.base`; Mest's own adapters run this suite (tests/test_adapters.py).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .api import Request, Response
from .predictors import PredictorBase

if TYPE_CHECKING:
    from .app import Mest
    from .testing import TestClient
    from .webframeworks.base import WebFramework

__all__ = ["AdapterConformance"]

#: What Mest itself puts on a response; an adapter adds nothing (the WSGI server may add Date, Server, ...).
_MEST_HEADERS = frozenset({"content-type", "content-length", "x-request-id", "allow", "x-custom"})
_LITERAL_PATHS = ("/literal/a:b", "/literal/x(y)", "/literal/star*", "/literal/semi;colon", "/literal/at@sign")


class _Echo(PredictorBase):
    """Answers with what it received, and the request's method and path."""

    content_types = ("application/json", "application/octet-stream")

    def pre_process(self, input_data: Any, req: Request) -> Any:
        return input_data

    def infer(self, processed_data: Any) -> Any:
        return processed_data

    def post_process(self, prediction: Any, req: Request) -> Any:
        if isinstance(prediction, bytes):
            return Response(prediction, headers={"Content-Type": "application/octet-stream", "X-Custom": "1"})
        return {"echo": prediction, "path": req.path}


class AdapterConformance:
    """Subclass it in a test module with a ``Test`` name and an adapter factory; pytest runs every rule.

    Example:
        >>> from mest.testing import AdapterConformance        # doctest: +SKIP
        >>> class TestMyAdapter(AdapterConformance):            # doctest: +SKIP
        ...     def make_adapter(self):
        ...         return MyWebFramework()
    """

    def make_adapter(self) -> WebFramework:
        """A new, unused instance of the adapter under test."""
        raise NotImplementedError(f"{type(self).__name__}.make_adapter is not implemented")

    def _app(self, **settings: Any) -> Mest:
        from .app import Mest

        app = Mest(web_framework=self.make_adapter(), **settings)
        app.add_inference_handler(_Echo(), "/echo")
        for path in _LITERAL_PATHS:
            app.add_inference_handler(_Echo(), path)
        return app

    @staticmethod
    def _client(app: Mest) -> TestClient:
        from .testing import TestClient

        return TestClient(app)

    def test_routes_and_bodies_reach_mest(self) -> None:
        client = self._client(self._app())
        result = client.post("/echo", json={"x": [1, 2]})
        assert result.status_code == 200, result.content
        assert result.json() == {"echo": {"x": [1, 2]}, "path": "/echo"}
        raw = client.post("/echo", content=b"\x00\x01raw", headers={"Content-Type": "application/octet-stream"})
        assert raw.status_code == 200 and raw.content == b"\x00\x01raw"
        assert raw.headers["x-custom"] == "1"

    def test_unknown_paths_get_mests_404(self) -> None:
        result = self._client(self._app()).get("/no/such/route")
        assert result.status_code == 404 and result.json()["code"] == "not_found"

    def test_every_method_on_a_known_path_reaches_mest(self) -> None:
        client = self._client(self._app(cors_origins=["https://example.com"]))
        for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
            result = client.request(method, "/echo")
            assert result.status_code == 405, (method, result.status_code, result.content)
            assert result.json()["code"] == "method_not_allowed" and result.headers["allow"] == "POST", method
        preflight = client.request(
            "OPTIONS", "/echo",
            headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204, preflight.content  # Mest's CORS answer, not the framework's
        assert preflight.headers["access-control-allow-methods"] == "POST"

    def test_paths_are_literal(self) -> None:
        client = self._client(self._app())
        for path in _LITERAL_PATHS:
            result = client.post(path, json={})
            assert result.status_code == 200 and result.json()["path"] == path, (path, result.content)
        for near_miss in ("/literal/aXb", "/literal/xy", "/literal/star", "/literal/starry", "/literal/b"):
            result = client.post(near_miss, json={})
            assert result.status_code == 404, (near_miss, result.status_code)

    def test_routes_added_while_serving_from_another_thread_are_served(self) -> None:
        app = self._app()
        client = self._client(app)
        assert client.post("/echo", json=1).status_code == 200  # serving: wsgi_app() has been called
        errors: list[BaseException] = []

        def register() -> None:
            try:
                app.add_inference_handler(_Echo(), "/late")
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=register)
        thread.start()
        thread.join(30)
        assert not errors, errors
        result = client.post("/late", json=2)
        assert result.status_code == 200 and result.json()["path"] == "/late"

    def test_the_framework_adds_no_headers_of_its_own(self) -> None:
        client = self._client(self._app())
        for result in (
            client.post("/echo", json={}),
            client.post("/echo", content=b"x", headers={"Content-Type": "application/octet-stream"}),
            client.get("/no/such/route"),
            client.delete("/echo"),
        ):
            extra = {name.lower() for name in result.headers} - _MEST_HEADERS
            assert not extra, f"the adapter added {sorted(extra)}"

    def test_head_has_the_get_headers_and_no_body(self) -> None:
        client = self._client(self._app())
        get = client.get("/health/live")
        head = client.request("HEAD", "/health/live")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(get.content))
