"""The ``mest`` command: ``serve`` an app under gunicorn, list its ``routes``, ``check`` it, ``bench`` a server.

Built on click (small, stable, no dependencies of its own, with a test runner): every flag of ``mest serve``
can also come from a ``MEST_*`` environment variable, a flag on the command line wins over the variable, and
an invalid value stops the command with a message naming the flag and the variable. See docs/cli.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import traceback
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from ._version import __version__
from .cli_nginx import nginx as nginx_command
from .config import ENV_PREFIX, ConfigError, RequestLimits, Spec, env_name, known_variables, settings_fields
from .loadgen._cli import bench
from .server.loader import AppLoadError, describe_app, load_app

if TYPE_CHECKING:
    from .app import Mest
    from .pipeline import Pipeline

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])



@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="mest")
def main() -> None:
    """Mest: serve ML models over REST.

    \b
      mest serve app:app     run app.py's `app` under gunicorn (production)
      mest routes app:app    list its routes, models and batching settings
      mest check app:app     import it, set up every model, run each example
      mest bench URL         load-test a running server: requests/s and latency per concurrency
    """


# -- shared helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _user_errors(spec: str) -> Iterator[None]:
    """Turn a failed app import into a clear message and exit status 1, with the user's traceback if any."""
    try:
        yield
    except AppLoadError as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigError as exc:
        raise click.ClickException(f"Invalid configuration: {exc}") from None
    except Exception as exc:
        from .repository import RepositoryError
        from .runtimes import MissingExtra

        if isinstance(exc, (RepositoryError, MissingExtra)):  # the message names the file and field, or the extra
            raise click.ClickException(str(exc)) from None
        traceback.print_exc(file=sys.stderr)
        raise click.ClickException(f"Importing {spec} failed: {type(exc).__name__}: {exc}") from None


def _load(spec: str) -> Mest:
    # Whatever the module prints while it is imported goes to stderr, keeping stdout for the command's output.
    with _user_errors(spec), contextlib.redirect_stdout(sys.stderr):
        return load_app(spec)


def _warn_unknown_variables(extra: Sequence[str] = ()) -> None:
    from .settings import Settings

    known = known_variables(Settings, RequestLimits) | set(extra) | {"MEST_HOST", "MEST_PORT"}
    unknown = sorted(
        name for name in os.environ
        if name.startswith(ENV_PREFIX) and name not in known and not name.startswith("MEST_BENCH_")
    )
    if unknown:
        click.echo(f"Warning: ignoring unknown variable(s) {', '.join(unknown)} (see `mest serve --help`).",
                   err=True)


def _app_argument(command: F) -> F:
    # Optional: `--model-repository DIR` serves a folder of model files instead (mest.repository).
    command = click.option(
        "--model-control", envvar="MEST_MODEL_CONTROL", show_envvar=True, default="none", show_default=True,
        type=click.Choice(["none", "explicit"]),
        help="explicit: serve the V2 repository extension (index, load, unload) for --model-repository.",
    )(command)
    command = click.option(
        "--model-repository", envvar="MEST_MODEL_REPOSITORY", show_envvar=True, default=None,
        type=click.Path(exists=True, file_okay=False), help="Serve DIR/NAME/VERSION/model.EXT with no code "
        "(docs/runtimes.md), instead of APP.",
    )(command)
    return click.argument("app", metavar="[APP]", envvar="MEST_APP", required=False)(command)


def _app_spec(app: str | None, model_repository: str | None, model_control: str) -> tuple[str, dict[str, str]]:
    """The app spec to load, and the variables its processes need, from APP or --model-repository."""
    from .repository.served import SPEC

    if model_repository is None:
        if app is None:
            raise click.UsageError("Missing APP (like app:app), or --model-repository DIR.")
        return app, {}
    if app is not None and app != SPEC:
        raise click.UsageError("Give APP or --model-repository, not both.")
    return SPEC, {"MEST_MODEL_REPOSITORY": os.path.abspath(model_repository), "MEST_MODEL_CONTROL": model_control}


def _load_target(app: str | None, model_repository: str | None, model_control: str) -> Mest:
    """The app `mest routes` and `mest check` work on: APP, or one built from --model-repository."""
    spec, _ = _app_spec(app, model_repository, model_control)
    if model_repository is None:
        return _load(spec)
    from .repository import app_from_repository

    with _user_errors(model_repository), contextlib.redirect_stdout(sys.stderr):
        return app_from_repository(model_repository, model_control=model_control)  # type: ignore[arg-type]


# -- mest serve ----------------------------------------------------------------------------------------

#: Every `mest serve` option's environment variable (for the unknown-variable warning).
SERVE_VARIABLES: list[str] = ["MEST_APP", "MEST_MODEL_REPOSITORY", "MEST_MODEL_CONTROL"]


def _click_type(hint: Any, spec: Spec) -> Any:
    """The click type of a setting's type: a choice for a ``Literal``, a range for bounded numbers."""
    if typing.get_origin(hint) is Literal:
        return click.Choice([str(choice) for choice in typing.get_args(hint)])
    if hint is int and (spec.minimum is not None or spec.maximum is not None):
        return click.IntRange(_int_or_none(spec.minimum), _int_or_none(spec.maximum))
    if hint is float and (spec.minimum is not None or spec.maximum is not None):
        return click.FloatRange(spec.minimum, spec.maximum)
    return hint if hint in (int, float) else None


def _int_or_none(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def _serve_options(command: F) -> F:
    """``mest serve``'s options, one per field of :class:`~mest.server.options.ServeOptions` with a flag: the
    flag, help, default, type and bounds all come from that field's declaration (mest.config.setting)."""
    from .server.options import ServeOptions

    for field, hint, spec in reversed(settings_fields(ServeOptions)):
        if spec.flag is None:
            continue
        envvar = env_name(field.name)
        SERVE_VARIABLES.append(envvar)
        base = typing.get_args(hint)[0] if type(None) in typing.get_args(hint) else hint
        decls = [field.name, spec.flag] + ([spec.short] if spec.short else [])
        extra: dict[str, Any] = {"is_flag": True} if base is bool else {"type": _click_type(base, spec)}
        command = click.option(
            *decls, envvar=envvar, show_envvar=True, default=field.default, help=spec.help,
            show_default=True if spec.show_default is None else spec.show_default, **extra,
        )(command)
    return command


@main.command()
@_app_argument
@_serve_options
def serve(app: str | None, model_repository: str | None, model_control: str, **flags: Any) -> None:
    """Serve APP under gunicorn (or granian), ready for production.

    APP is MODULE:ATTRIBUTE, e.g. app:app. Prints the URL, workers and routes once it listens. SIGTERM
    drains in-flight requests then exits; SIGHUP restarts the workers without dropping requests.
    """
    if flags["server"] == "granian":
        if importlib.util.find_spec("granian") is None:
            raise click.ClickException("mest serve --server granian needs granian: pip install 'mest[granian]'")
        if flags["reload"] and importlib.util.find_spec("watchfiles") is None:
            raise click.ClickException("--reload with granian needs watchfiles: pip install 'granian[reload]'")
    elif importlib.util.find_spec("gunicorn") is None or (
        flags["worker_class"] == "gevent" and importlib.util.find_spec("gevent") is None
    ):
        raise click.ClickException(
            "mest serve needs gunicorn (and gevent for gevent workers): pip install 'mest[gunicorn]'"
        )
    from .server.options import ServeOptions

    _warn_unknown_variables(SERVE_VARIABLES)
    app, environ = _app_spec(app, model_repository, model_control)
    try:
        options = ServeOptions(app=app, environ=environ, **flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        if options.server == "granian":
            from .server.granian import serve as run_granian

            run_granian(options)
        else:
            from .server.gunicorn import serve as run_gunicorn

            run_gunicorn(options)
    except AppLoadError as exc:
        raise click.ClickException(f"Cannot serve {app}:\n{exc}") from None


# -- mest routes ---------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])


@main.command()
@_app_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def routes(app: str | None, model_repository: str | None, model_control: str, as_json: bool) -> None:
    """List APP's routes with the model, version and batching settings behind each."""
    if not as_json:  # `mest serve` runs `routes --json` and has warned already
        _warn_unknown_variables(SERVE_VARIABLES)
    description = describe_app(_load_target(app, model_repository, model_control))
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    auth = description["settings"]["auth"]
    header = ["METHOD", "PATH", "MODEL", "VERSION", "BATCH", "DELAY_MS", "QUEUE", "TIMEOUT_S"]
    if auth:
        header.append("AUTH")
    rows = []
    for route in description["routes"]:
        model = route.get("model") or {}
        row = [route["method"], route["path"], _cell(model.get("name")), _cell(model.get("version"))]
        row += [_cell(model.get(k)) for k in ("max_batch_size", "max_batch_delay_ms", "max_queue", "timeout_s")]
        if auth:
            row.append("public" if route["public"] else "key")
        rows.append(row)
    click.echo(_table(header, rows))


# -- mest check ----------------------------------------------------------------------------------------


def _example_request(pipeline: Pipeline, example: Any) -> dict[str, Any]:
    """A bytes example is sent raw, as the predictor's first non-JSON content type; anything else as JSON."""
    if isinstance(example, bytes | bytearray):
        types = [t for t in getattr(pipeline.predictor, "content_types", ()) if "json" not in t]
        content_type = types[0] if types else "application/octet-stream"
        return {"content": bytes(example), "headers": {"Content-Type": content_type}}
    return {"json": example}


def _check_model(pipeline: Pipeline, client: Any) -> tuple[bool, str]:
    """Set up one model and run its example; return (ok, what happened)."""
    started = time.perf_counter()
    if not pipeline.ensure_setup():
        return False, f"setup failed: {pipeline.setup_error}"
    report = f"setup {1000 * (time.perf_counter() - started):.0f} ms"
    example = getattr(pipeline.predictor, "example", None)
    if example is None:
        return True, f"{report}; no example to run (set `example = ...` on {type(pipeline.predictor).__name__})"
    started = time.perf_counter()
    result = client.post(pipeline.config.route, **_example_request(pipeline, example))
    elapsed = f"{1000 * (time.perf_counter() - started):.0f} ms"
    if not 200 <= result.status_code < 300:
        try:
            message = result.json().get("error", result.text)
        except ValueError:
            message = result.text
        return False, f"{report}; example answered {result.status_code} in {elapsed}: {message}"
    return True, f"{report}; example answered {result.status_code} in {elapsed}"


@main.command()
@_app_argument
def check(app: str | None, model_repository: str | None, model_control: str) -> None:
    """Import APP, set up every model and run each predictor's example end to end.

    Exits with status 1 and says why if anything fails: for CI and container health checks. A predictor
    provides an example input as `example = {...}` (a class attribute or a property).
    """
    from .testing import TestClient

    _warn_unknown_variables(SERVE_VARIABLES)
    mest_app = _load_target(app, model_repository, model_control)
    app = app or model_repository
    keys = mest_app.settings.api_keys
    client = TestClient(mest_app, headers={"X-API-Key": keys[0]} if keys else None)
    pipelines = mest_app.pipelines
    failed = 0
    for pipeline in pipelines:
        label = pipeline.config.name + (f" v{pipeline.config.version}" if pipeline.config.version else "")
        try:
            ok, report = _check_model(pipeline, client)
        except Exception as exc:  # a bug in Mest or the app must still end in a clear verdict
            ok, report = False, f"{type(exc).__name__}: {exc}"
        failed += not ok
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {label} ({pipeline.config.route}): {report}")
    if not pipelines:
        click.echo(f"Warning: {app} registers no predictor (app.add_inference_handler).", err=True)
    if failed:
        raise click.ClickException(f"{failed} of {len(pipelines)} model(s) failed the check.")
    click.echo(f"{app}: {len(pipelines)} model(s) OK.")


# -- mest bench: the load generator, its own package (mest.loadgen) -----------------------------------------

main.add_command(bench)
main.add_command(nginx_command)

# -- deployment commands (mest.deploy) -----------------------------------------------------------------

from .deploy._cli import dockerfile_command, k8s_command  # noqa: E402  (registered last: they import the loader)
from .deploy._ray_cli import ray_group  # noqa: E402

main.add_command(dockerfile_command)
main.add_command(k8s_command)
main.add_command(ray_group)

if __name__ == "__main__":  # pragma: no cover
    main()
