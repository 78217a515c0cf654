"""Settings from ``MEST_*`` environment variables: parsing, precedence, and errors that name the variable."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Literal

import pytest

from mest import Mest
from mest.app import Settings
from mest.config import ConfigError, RequestLimits, Spec, apply_environment, env_name, parse, settings_fields
from mest.server.options import ServeOptions
from mest.settings import SettingsArguments
from mest.testing import TestClient
from mest.webframeworks.wsgi import PlainWSGI


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MEST_* variable of the developer's shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("MEST_"):
            monkeypatch.delenv(name)


# -- parse ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "hint", "expected"),
    [
        ("42", int, 42),
        (" 1_000 ", int, 1000),
        ("0.5", float, 0.5),
        ("yes", bool, True),
        ("Off", bool, False),
        ("text", str, "text"),
        ("json", Literal["text", "json"], "json"),
        ("a, b,,c ", tuple[str, ...], ("a", "b", "c")),
        ("", tuple[str, ...], ()),
        ("", str | None, None),
        ("None", str | None, None),
        ("/live", str | None, "/live"),
        ("a,b", tuple[str, ...] | None, ("a", "b")),
        ("null", tuple[str, ...] | None, None),
    ],
)
def test_parse(raw: str, hint: object, expected: object) -> None:
    assert parse(raw, hint, "MEST_X") == expected


@pytest.mark.parametrize(
    ("raw", "hint", "message"),
    [
        ("ten", int, "MEST_X='ten': expected an integer"),
        ("fast", float, "MEST_X='fast': expected a number"),
        ("maybe", bool, "MEST_X='maybe': expected true or false"),
        ("xml", Literal["text", "json"], "MEST_X='xml': expected one of text, json"),
        ("1", dict[str, int], "MEST_X: settings of type"),
    ],
)
def test_parse_errors_name_the_variable(raw: str, hint: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(raw, hint, "MEST_X")
    assert str(caught.value).startswith(message)


def test_every_setting_can_be_read_from_the_environment() -> None:
    """A field added to Settings with a type the environment cannot express fails here, not in production."""
    hints = typing.get_type_hints(Settings)
    for field in dataclasses.fields(Settings):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        text = "" if default is None else ",".join(default) if isinstance(default, tuple) else str(default)
        assert parse(text, hints[field.name], env_name(field.name)) == default, field.name


def test_every_setting_variable_is_documented() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    for field in dataclasses.fields(Settings):
        assert f"`{env_name(field.name)}" in text, f"{env_name(field.name)} is missing from docs/cli.md"


# -- Mest(...) settings ----------------------------------------------------------------------------------


def test_variable_sets_a_setting_the_code_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEST_MAX_BODY_SIZE", "2048")
    monkeypatch.setenv("MEST_HEALTH_LIVE_PATH", "/livez")
    app = Mest(web_framework=PlainWSGI())
    assert app.settings.max_body_size == 2048
    client = TestClient(app)
    assert client.get("/livez").status_code == 200
    assert client.get("/health/live").status_code == 404


def test_explicit_argument_wins_over_the_variable_even_when_it_equals_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEST_MAX_BODY_SIZE", "2048")
    monkeypatch.setenv("MEST_HEALTH_READY_PATH", "/readyz")
    app = Mest(PlainWSGI(), max_body_size=Settings.max_body_size, health_ready_path="/health/ready")
    assert app.settings.max_body_size == Settings.max_body_size
    assert app.settings.health_ready_path == "/health/ready"


def test_default_applies_without_argument_or_variable() -> None:
    assert Mest(PlainWSGI()).settings == Settings()


def test_empty_variable_switches_an_optional_endpoint_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEST_HEALTH_LIVE_PATH", "")
    app = Mest(PlainWSGI())
    assert app.settings.health_live_path is None
    assert ("GET", "/health/live") not in app.routes()


def test_list_settings_from_comma_separated_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEST_API_KEYS", "key-one, key-two")
    monkeypatch.setenv("MEST_CORS_ORIGINS", "https://a.example,http://localhost:3000")
    monkeypatch.setenv("MEST_PUBLIC_PATHS", "/health/*")
    settings = Mest(PlainWSGI()).settings
    assert settings.api_keys == ("key-one", "key-two")
    assert settings.cors_origins == ("https://a.example", "http://localhost:3000")
    assert settings.public_paths == ("/health/*",)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MEST_MAX_BODY_SIZE", "big", "MEST_MAX_BODY_SIZE='big': expected an integer"),
        ("MEST_MAX_BODY_SIZE", "-1", "MEST_MAX_BODY_SIZE='-1': max_body_size must be a non-negative integer"),
        ("MEST_HEALTH_LIVE_PATH", "live", "MEST_HEALTH_LIVE_PATH='live': health_live_path must be a path"),
        ("MEST_CORS_ORIGINS", "example.com", "MEST_CORS_ORIGINS='example.com': cors_origins entries must be"),
    ],
)
def test_invalid_variable_fails_at_startup_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        Mest(PlainWSGI())
    assert str(caught.value).startswith(message)


def test_invalid_key_variable_is_named_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEST_API_KEYS", "good-key,bad key-secret")
    with pytest.raises(ConfigError) as caught:
        Mest(PlainWSGI())
    message = str(caught.value)
    assert message.startswith("MEST_API_KEYS=<hidden>: api_keys[1] is not a valid key")
    assert "secret" not in message and "good-key" not in message


def test_invalid_variable_of_an_explicit_setting_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEST_MAX_BODY_SIZE", "big")
    assert Mest(PlainWSGI(), max_body_size=5).settings.max_body_size == 5


# -- the generic machinery, on any dataclass -----------------------------------------------------------


def test_apply_environment_on_request_limits() -> None:
    limits = apply_environment(
        RequestLimits(), environ={"MEST_LIMIT_REQUEST_LINE": "512", "MEST_LIMIT_REQUEST_FIELDS": "20"}
    )
    assert limits == RequestLimits(limit_request_line=512, limit_request_fields=20)
    assert apply_environment(RequestLimits(), explicit={"limit_request_line"},
                             environ={"MEST_LIMIT_REQUEST_LINE": "1"}) == RequestLimits()
    with pytest.raises(ConfigError, match=r"^MEST_LIMIT_REQUEST_FIELDS='-3': limit_request_fields must be"):
        apply_environment(RequestLimits(), environ={"MEST_LIMIT_REQUEST_FIELDS": "-3"})


# -- one declaration per setting: Mest(...), mest serve and docs/cli.md all derive from it ----------------


def test_mest_keyword_arguments_are_exactly_the_settings() -> None:
    """``Mest(**settings)`` is typed by SettingsArguments; it must name every Settings field and no other."""
    assert set(SettingsArguments.__annotations__) == {f.name for f in dataclasses.fields(Settings)}
    assert list(SettingsArguments.__annotations__) == [f.name for f in dataclasses.fields(Settings)]


def test_unknown_keyword_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"^Mest\(\) got an unexpected keyword argument 'max_bodysize'$"):
        Mest(PlainWSGI(), max_bodysize=5)  # type: ignore[call-arg]


def test_settings_module_is_the_one_behind_mest_app() -> None:
    import mest.app
    import mest.settings

    assert mest.app.Settings is mest.settings.Settings


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"body_timeout": -1}, "body_timeout must be a non-negative number of seconds, got -1"),
        ({"body_timeout": float("inf")}, "body_timeout must be a non-negative number of seconds, got inf"),
        ({"max_body_size": True}, "max_body_size must be a non-negative integer, got True"),
        ({"log_format": "xml"}, "log_format must be 'text' or 'json', got 'xml'"),
        ({"access_log": 1}, "access_log must be True or False, got 1"),
        ({"title": ""}, "title must be a non-empty string, got ''"),
        ({"stream_time_limit_s": 0}, "stream_time_limit_s must be > 0 or None, got 0"),
        ({"metrics_path": "metrics"}, "metrics_path must be a path like '/health/live', got 'metrics'"),
        ({"openapi_path": None}, "docs_path needs openapi_path"),
    ],
)
def test_settings_validation_comes_from_each_declaration(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings(**changes)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_serve_options_are_validated_by_their_declarations() -> None:
    ServeOptions(app="app:app")  # the defaults are valid
    with pytest.raises(ValueError, match=r"^port must be an integer from 0 to 65535, got 70000$"):
        ServeOptions(app="app:app", port=70000)
    with pytest.raises(ValueError, match=r"^worker_class must be 'gevent', 'gthread' or 'sync', got 'eventlet'$"):
        ServeOptions(app="app:app", worker_class="eventlet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^limit_request_line must be an integer from 0 to 8190, got 9000$"):
        ServeOptions(app="app:app", limit_request_line=9000)


def test_serve_passes_its_app_settings_to_the_app_as_variables() -> None:
    options = ServeOptions(app="app:app", max_body_size=5, environ={"MEST_MODEL_CONTROL": "none"})
    assert options.app_environ() == {"MEST_MODEL_CONTROL": "none", "MEST_MAX_BODY_SIZE": "5", "MEST_LOG_FORMAT": "text"}
    assert ServeOptions(app="app:app", body_timeout=2.5, log_format="json").app_environ() == {
        "MEST_BODY_TIMEOUT": "2.5", "MEST_LOG_FORMAT": "json"
    }


def test_mest_serve_defaults_are_the_declared_ones() -> None:
    """Each `mest serve` option's default, bounds and variable come from its ServeOptions field, whose app
    settings and request limits are declared as those of Settings and RequestLimits."""
    from mest.cli import main

    params = {param.name: param for param in main.commands["serve"].params}
    defaults = ServeOptions(app="app:app")
    for field, _, spec in settings_fields(ServeOptions):
        assert field.name in params, field.name
        assert params[field.name].default == getattr(defaults, field.name), field.name
        assert params[field.name].envvar == env_name(field.name)
        assert spec.flag in params[field.name].opts
    assert RequestLimits() == RequestLimits(
        defaults.limit_request_line, defaults.limit_request_fields, defaults.limit_request_field_size
    )
    assert defaults.log_format == Settings().log_format
    assert params["port"].type.max == 65535 and params["limit_request_line"].type.max == 8190  # type: ignore[attr-defined]


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def _doc_default(default: object, spec: Spec) -> str:
    if default is None:
        assert spec.show_default is not None
        return spec.show_default
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def test_docs_serve_table_matches_the_declarations() -> None:
    """docs/cli.md's `mest serve` table has one row per flag, with its variable and its declared default."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    rows = {}
    for line in _section(text, "## `mest serve`", "Once it listens").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`MEST_"):
            rows[cells[1].strip("`")] = cells
    declared = {env_name(field.name): (field, spec) for field, _, spec in settings_fields(ServeOptions)}
    extra = {"MEST_APP", "MEST_MODEL_REPOSITORY", "MEST_MODEL_CONTROL"}  # the app itself, not ServeOptions
    assert set(rows) == set(declared) | extra
    for variable, (field, spec) in declared.items():
        flags, _, default, _ = rows[variable]
        assert f"`{spec.flag}`" in flags and (spec.short is None or f"`{spec.short}`" in flags), variable
        assert default.replace("`", "") == _doc_default(field.default, spec), variable


def test_docs_settings_table_names_exactly_the_settings() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    table = _section(text, "The `Mest(...)` settings", "`app.run()` (the development server)")
    assert set(re.findall(r"`(MEST_[A-Z_]+)`", table)) == {env_name(f.name) for f in dataclasses.fields(Settings)}
