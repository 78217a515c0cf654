"""Shared fixtures: every behaviour test runs once per web-framework adapter (GUIDE habit 7).

``adapter`` is a fresh :class:`~mest.webframeworks.WebFramework` of each kind; ``make_app(**settings)`` builds a
:class:`~mest.Mest` on it. Tests talk to apps only through the public :class:`mest.testing.TestClient`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mest import Mest
from mest.webframeworks import WebFramework
from mest.webframeworks.falcon import FalconFramework
from mest.webframeworks.wsgi import PlainWSGI

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
