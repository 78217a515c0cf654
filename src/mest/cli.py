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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._version import __version__
from .config import ENV_PREFIX, ConfigError, known_variables
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
        traceback.print_exc(file=sys.stderr)
        raise click.ClickException(f"Importing {spec} failed: {type(exc).__name__}: {exc}") from None


def _load(spec: str) -> Mest:
    # Whatever the module prints while it is imported goes to stderr, keeping stdout for the command's output.
    with _user_errors(spec), contextlib.redirect_stdout(sys.stderr):
        return load_app(spec)


def _warn_unknown_variables(extra: Sequence[str] = ()) -> None:
    from .app import Settings

    known = known_variables(Settings) | set(extra) | {"MEST_HOST", "MEST_PORT"}
    unknown = sorted(
        name for name in os.environ
        if name.startswith(ENV_PREFIX) and name not in known and not name.startswith("MEST_BENCH_")
    )
    if unknown:
        click.echo(f"Warning: ignoring unknown variable(s) {', '.join(unknown)} (see `mest serve --help`).",
                   err=True)


def _app_argument(command: F) -> F:
    return click.argument("app", metavar="APP", envvar="MEST_APP")(command)


# -- mest serve ----------------------------------------------------------------------------------------

#: Every `mest serve` option's environment variable (for the unknown-variable warning).
SERVE_VARIABLES: list[str] = ["MEST_APP"]


def _option(*decls: str, envvar: str, **kwargs: Any) -> Callable[[F], F]:
    SERVE_VARIABLES.append(envvar)
    kwargs.setdefault("show_default", True)
    return click.option(*decls, envvar=envvar, show_envvar=True, **kwargs)


@main.command()
@_app_argument
@_option("--server", envvar="MEST_SERVER", default="gunicorn", type=click.Choice(["gunicorn", "granian"]),
         help="gunicorn: the seed's server (gevent workers by default); granian: a Rust HTTP server running "
              "the app on --threads threads per worker, about twice the throughput (pip install 'mest[granian]').")
@_option("--host", envvar="MEST_HOST", default="127.0.0.1",
         help="Interface to bind; 0.0.0.0 for all IPv4 interfaces (containers).")
@_option("--port", envvar="MEST_PORT", default=5000, type=click.IntRange(0, 65535),
         help="Port to bind; 0 picks a free one.")
@_option("--workers", "-w", envvar="MEST_WORKERS", type=click.IntRange(min=1), default=None,
         show_default="CPUs available", help="Worker processes.")
@_option("--worker-class", "-k", envvar="MEST_WORKER_CLASS", default="gevent",
         type=click.Choice(["gevent", "gthread", "sync"]),
         help="gevent: many concurrent requests per worker (batching needs concurrency); "
              "gthread: a thread pool per worker; sync: one request at a time.")
@_option("--threads", envvar="MEST_THREADS", default=4, type=click.IntRange(min=1),
         help="Threads per worker (gthread workers, and granian).")
@_option("--timeout", envvar="MEST_TIMEOUT", default=60, type=click.IntRange(min=1),
         help="Seconds a blocked worker (or one still starting, model setup included) lives before it is "
              "replaced.")
@_option("--graceful-timeout", envvar="MEST_GRACEFUL_TIMEOUT", default=30, type=click.IntRange(min=0),
         help="Seconds in-flight requests get to finish on SIGTERM/SIGHUP.")
@_option("--keepalive", envvar="MEST_KEEPALIVE", default=5, type=click.IntRange(min=0),
         help="Seconds an idle keep-alive connection stays open.")
@_option("--max-body-size", envvar="MEST_MAX_BODY_SIZE", type=click.IntRange(min=0), default=None,
         show_default="the app's setting", help="Largest request body in bytes (413 beyond).")
@_option("--limit-request-line", envvar="MEST_LIMIT_REQUEST_LINE", default=4094,
         type=click.IntRange(0, 8190), help="Longest request line (method + URL) in bytes; 414 beyond.")
@_option("--limit-request-fields", envvar="MEST_LIMIT_REQUEST_FIELDS", default=100,
         type=click.IntRange(1, 32768), help="Most request headers; 431 beyond.")
@_option("--limit-request-field-size", envvar="MEST_LIMIT_REQUEST_FIELD_SIZE", default=8190,
         type=click.IntRange(min=0), help="Longest header line in bytes; 431 beyond.")
@_option("--reload", envvar="MEST_RELOAD", is_flag=True, default=False,
         help="Restart workers when a source file changes (development only).")
@_option("--preload", envvar="MEST_PRELOAD", is_flag=True, default=False,
         help="Import the app once in the master and fork workers from it (gthread/sync workers only).")
@_option("--log-format", envvar="MEST_LOG_FORMAT", default="text", type=click.Choice(["text", "json"]),
         help="Log lines as text, or one JSON object per line.")
@_option("--log-level", envvar="MEST_LOG_LEVEL", default="info",
         type=click.Choice(["debug", "info", "warning", "error", "critical"]), help="Log level.")
def serve(app: str, **flags: Any) -> None:
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
    try:
        options = ServeOptions(app=app, **flags)
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
def routes(app: str, as_json: bool) -> None:
    """List APP's routes with the model, version and batching settings behind each."""
    if not as_json:  # `mest serve` runs `routes --json` and has warned already
        _warn_unknown_variables(SERVE_VARIABLES)
    description = describe_app(_load(app))
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
def check(app: str) -> None:
    """Import APP, set up every model and run each predictor's example end to end.

    Exits with status 1 and says why if anything fails: for CI and container health checks. A predictor
    provides an example input as `example = {...}` (a class attribute or a property).
    """
    from .testing import TestClient

    _warn_unknown_variables(SERVE_VARIABLES)
    mest_app = _load(app)
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


if __name__ == "__main__":  # pragma: no cover
    main()
