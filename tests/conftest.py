"""Shared fixtures: every behaviour test runs once per web-framework adapter (GUIDE habit 7).

``adapter`` is a fresh :class:`~mest.webframeworks.WebFramework` of each kind; ``make_app(**settings)`` builds a
:class:`~mest.Mest` on it. Tests talk to apps only through the public :class:`mest.testing.TestClient`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mest import Mest
from mest.webframeworks import WebFramework
from mest.webframeworks.falcon import FalconFramework
from mest.webframeworks.wsgi import PlainWSGI

ROOT = Path(__file__).resolve().parent.parent
IRIS_MODEL = ROOT / "examples" / "iris" / "models" / "logistic_regression.pkl"


def pytest_configure(config: pytest.Config) -> None:
    """Train the bundled iris model (git-ignored, seconds to make) before any test module loads it."""
    if IRIS_MODEL.exists():
        return
    spec = importlib.util.spec_from_file_location("iris_train", ROOT / "examples" / "iris" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    train.main(out=IRIS_MODEL)


#: Every adapter Mest ships, by the id tests are parametrized with.
ADAPTERS: dict[str, Callable[[], WebFramework]] = {
    "falcon": FalconFramework,
    "wsgi": PlainWSGI,
}


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> WebFramework:
    """A new adapter instance, once per adapter Mest ships."""
    return ADAPTERS[request.param]()


@pytest.fixture
def make_app(adapter: WebFramework) -> Callable[..., Mest]:
    """Factory of apps served by this test's adapter: ``make_app(max_body_size=100)``.

    One adapter instance serves one app, so the factory builds a new adapter of the same kind for every
    app after the first.
    """
    used = False

    def factory(**settings: Any) -> Mest:
        nonlocal used
        framework = adapter if not used else type(adapter)()
        used = True
        return Mest(web_framework=framework, **settings)

    return factory
