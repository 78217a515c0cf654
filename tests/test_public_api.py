"""The public facade (GUIDE habit 1) and the light core (habit 9)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import types
from typing import Any

import pytest

import mest

PUBLIC = ["BaseModel", "BasePredictor", "Mest", "PredictorBase", "Request", "Response"]


def test_all_is_sorted() -> None:
    assert mest.__all__ == sorted(mest.__all__)


def test_all_is_exactly_the_public_namespace() -> None:
    public = {
        name
        for name, value in vars(mest).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(mest.__all__)
    assert mest.__all__ == PUBLIC


def test_public_names_come_from_their_modules() -> None:
    from mest import api, app, models, predictors

    assert mest.Mest is app.Mest
    assert mest.Request is api.Request
    assert mest.Response is api.Response
    assert mest.BaseModel is models.BaseModel
    assert mest.PredictorBase is predictors.PredictorBase
    assert mest.BasePredictor is predictors.PredictorBase


def test_version() -> None:
    assert isinstance(mest.__version__, str)
    assert mest.__version__.count(".") >= 1


@pytest.mark.parametrize(
    "module",
    [
        "mest.api",
        "mest.errors",
        "mest.predictors",
        "mest.models",
        "mest.webframeworks",
        "mest.webframeworks.falcon",
        "mest.webframeworks.wsgi",
        "mest.testing",
        "mest.codecs.json",
        "mest.codecs.body",
    ],
)
def test_module_all_names_exist(module: str) -> None:
    imported = importlib.import_module(module)
    names = imported.__all__
    assert names, module
    for name in names:
        assert hasattr(imported, name), f"{module}.{name}"


def test_seed_readme_imports() -> None:
    """Every import line of the seed README (and the names users are told about) works."""
    from mest import Mest  # noqa: F401
    from mest.api import Request, Response  # noqa: F401
    from mest.errors import BadRequest, MestError  # noqa: F401
    from mest.models import BaseModel, JoblibModel  # noqa: F401
    from mest.predictors import BasePredictor, PredictorBase  # noqa: F401
    from mest.testing import TestClient  # noqa: F401
    from mest.webframeworks import WebFramework  # noqa: F401


def test_seed_readme_custom_web_framework() -> None:
    """The README's ``class MyWebFramework(WebFramework)``, implemented in a few lines, serves a predictor."""
    from mest import Mest
    from mest.predictors import PredictorBase
    from mest.testing import TestClient
    from mest.webframeworks import WebFramework
    from mest.webframeworks.wsgi import request_from_environ, start_wsgi_response

    class MyWebFramework(WebFramework):
        def __init__(self) -> None:
            self.routes: dict[tuple[str, str], Any] = {}

        def add_route(self, method: str, path: str, handler: Any) -> None:
            self.routes[(method, path)] = handler

        def set_fallback(self, handler: Any) -> None:
            self.fallback = handler

        def wsgi_app(self) -> Any:
            def app(environ: dict[str, Any], start_response: Any) -> Any:
                req = request_from_environ(environ)
                return start_wsgi_response(self.routes.get((req.method, req.path), self.fallback)(req), start_response)

            return app

    class Double(PredictorBase):
        def infer(self, processed_data: Any) -> Any:
            return [2 * x for x in processed_data]

    app = Mest(web_framework=MyWebFramework())
    app.add_inference_handler(Double(), "/double")
    client = TestClient(app)
    assert client.post("/double", json=[1, 2]).json() == [2, 4]
    assert client.get("/double").status_code == 405
    assert client.get("/health/live").status_code == 200


def test_incomplete_web_framework_names_the_missing_method() -> None:
    """The seed's ``class MyWebFramework(WebFramework): pass`` constructs; serving says what to implement."""
    from mest import Mest
    from mest.testing import TestClient
    from mest.webframeworks import WebFramework

    class Incomplete(WebFramework):
        pass

    app = Mest(web_framework=Incomplete())
    with pytest.raises(NotImplementedError, match=r"Incomplete\.add_route"):
        TestClient(app).get("/health/live")
    for method, args in [("add_route", ("GET", "/", None)), ("set_fallback", (None,)), ("wsgi_app", ())]:
        with pytest.raises(NotImplementedError, match=rf"Incomplete\.{method}"):
            getattr(Incomplete(), method)(*args)


def test_test_client_is_not_collected_by_pytest() -> None:
    from mest.testing import Result, TestClient

    assert TestClient.__test__ is False
    assert Result.__test__ is False


def _modules_loaded_by(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


HEAVY = ("falcon", "gunicorn", "gevent", "sklearn", "joblib", "httpx", "mest.loadgen", "matplotlib", "ml_dtypes")


def test_core_does_not_import_falcon() -> None:
    loaded = _modules_loaded_by("import mest.pipeline, mest.batching, mest.codecs, mest.api, mest.errors")
    assert "mest.pipeline" in loaded  # the check ran
    for heavy in HEAVY:
        assert heavy not in loaded, heavy


def test_mest_with_another_adapter_does_not_import_falcon() -> None:
    loaded = _modules_loaded_by(
        """
        import mest, mest.codecs.json, mest.codecs.body, mest.predictors, mest.models, mest.testing
        from mest.webframeworks.wsgi import PlainWSGI
        mest.Mest(web_framework=PlainWSGI())
        """
    )
    assert "mest.app" in loaded
    for heavy in HEAVY:
        assert heavy not in loaded, heavy


def test_serving_a_request_loads_no_load_generator() -> None:
    loaded = _modules_loaded_by(
        """
        import mest
        from mest.testing import TestClient
        app = mest.Mest()
        assert TestClient(app).get("/health/live").status_code == 200
        """
    )
    assert "mest.app" in loaded
    for unwanted in ("mest.loadgen", "mest.cli", "matplotlib", "ml_dtypes"):
        assert unwanted not in loaded, unwanted


def test_default_app_uses_falcon() -> None:
    loaded = _modules_loaded_by("import mest\nmest.Mest()")
    assert "falcon" in loaded
