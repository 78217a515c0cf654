"""The ``mest`` command: ``serve`` an app under gunicorn, list its ``routes``, ``check`` it, ``bench`` a server.

Built on click (small, stable, no dependencies of its own, with a test runner): every flag of ``mest serve``
can also come from a ``MEST_*`` environment variable, a flag on the command line wins over the variable, and
an invalid value stops the command with a message naming the flag and the variable. See docs/cli.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import mimetypes
import os
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click

from . import __version__
from .config import ENV_PREFIX, ConfigError, known_variables
from .server.loader import AppLoadError, describe_app, load_app

if TYPE_CHECKING:
    from ._loadgen import LoadResult, Progress
    from .app import Mest
    from .pipeline import Pipeline

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

APP_HELP = "The app as MODULE:ATTRIBUTE (default attribute: app), e.g. app:app, service.main:app or src/app.py."


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


# -- mest bench ----------------------------------------------------------------------------------------
# The engine is mest._loadgen (closed loop, one thread, selectors); this is its command line: parse the flags,
# run one measurement per concurrency with a live progress line, print the table, write JSON and the plot.

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?", re.IGNORECASE)
_SECONDS_PER = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """Seconds, from 10, 10s, 500ms, 1.5m or 1h."""
    found = _DURATION.fullmatch(value.strip())
    if not found:
        raise click.BadParameter(f"{value!r} is not a duration such as 10, 10s, 500ms or 1m.", ctx, param)
    return float(found[1]) * _SECONDS_PER[(found[2] or "s").lower()]


def _levels(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise click.BadParameter(f"{value!r} is not a list of positive integers such as 1,8,64.", ctx, param)
    return levels


def _headers(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> list[tuple[str, str]]:
    parsed = []
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip() or " " in name.strip() or "\r" in value or "\n" in value:
            raise click.BadParameter(f"{value!r} is not 'Name: value'.", ctx, param)
        parsed.append((name.strip(), text.strip()))
    return parsed


class _ProgressLine:
    """One line on stderr, rewritten in place (carriage return) a few times a second."""

    def __init__(self) -> None:
        self.width = 0

    def __call__(self, p: Progress) -> None:
        done = min(1.0, p.elapsed_s / p.phase_s) if p.phase_s > 0 else 1.0
        bar = "#" * round(24 * done) + "-" * (24 - round(24 * done))
        phase = "warm-up" if p.phase == "warmup" else "measure"
        text = f"c={p.concurrency:<4} {phase} [{bar}] {p.elapsed_s:5.1f}/{p.phase_s:.1f}s"
        if p.phase == "measure":
            rate = p.requests / p.elapsed_s if p.elapsed_s > 0 else 0.0
            text += f"  {p.requests:,} ok  {rate:,.0f} req/s  {p.errors:,} errors"
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def _errors_cell(errors: dict[str, int]) -> str:
    if not errors:
        return "0"
    ranked = sorted(errors.items(), key=lambda item: -item[1])
    return f"{sum(errors.values())} ({', '.join(f'{name}: {count}' for name, count in ranked)})"


def _bench_table(results: Sequence[LoadResult]) -> str:
    header = ["CONCURRENCY", "REQUESTS", "REQ/S", "P50_MS", "P90_MS", "P99_MS", "MAX_MS", "CLIENT_CPU", "ERRORS"]

    def ms(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.2f}"  # NaN: nothing succeeded

    rows = [
        [str(r.concurrency), str(r.requests), f"{r.rps:.1f}", *(ms(r.percentile(q)) for q in (50, 90, 99, 100)),
         f"{100 * r.client_cpu:.0f}%", _errors_cell(r.errors)]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    last = len(header) - 1  # ERRORS: left-aligned, free text
    return "\n".join(
        "  ".join(c if i == last else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in [header, *rows]
    )


def _bench_request(
    body_files: Sequence[BinaryIO], json_body: str | None, headers: list[tuple[str, str]], method: str | None
) -> tuple[list[bytes], list[tuple[str, str]], str]:
    """The bodies, the headers (with the Content-Type the body implies, unless given) and the method."""
    if body_files and json_body is not None:
        raise click.UsageError("Give --body or --json, not both.")
    content_type = None
    if json_body is not None:
        try:
            json.loads(json_body)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON ({exc}); use --body FILE to send it anyway.",
                                     param_hint="'--json'") from None
        bodies, content_type = [json_body.encode()], "application/json"
    else:
        bodies = [f.read() for f in body_files]
        if body_files:  # None for an unknown extension: the engine's default, application/json
            content_type = mimetypes.guess_type(body_files[0].name)[0]
    if content_type and not any(name.lower() == "content-type" for name, _ in headers):
        headers = [*headers, ("Content-Type", content_type)]
    return bodies, headers, (method or ("POST" if bodies else "GET")).upper()


def _run_levels(url: str, levels: Sequence[int], show: bool, **options: Any) -> list[LoadResult]:
    """One measurement per concurrency; what was measured before a Ctrl-C is kept."""
    from ._loadgen import LoadError, run_load

    line = _ProgressLine()
    results: list[LoadResult] = []
    try:
        for level in levels:
            result = run_load(url, concurrency=level, progress=line if show else None, **options)
            results.append(result)
            line.clear()
            if show:
                click.echo(f"c={level:<4} done    {result.requests:,} ok  {result.rps:,.0f} req/s  p99 "
                           f"{result.percentile(99):.2f} ms  {result.error_count:,} errors", err=True)
    except LoadError as exc:
        line.clear()
        raise click.ClickException(f"{exc}. Is the server running at {url}?") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        line.clear()
        click.echo("Interrupted: the results so far.", err=True)
    return results


@main.command(context_settings={"show_default": True})
@click.argument("url")
@click.option("--body", "body_files", type=click.File("rb"), multiple=True, metavar="FILE",
              help="Send FILE's bytes as the body ('-': stdin). Repeat to send several bodies round-robin. "
                   "Content-Type from the file extension, else application/json.")
@click.option("--json", "json_body", metavar="TEXT", help="Send TEXT as a JSON body (application/json).")
@click.option("--header", "-H", "headers", multiple=True, metavar="'NAME: VALUE'", callback=_headers,
              help="Add a request header, e.g. -H 'X-API-Key: ...' (repeatable; overrides Content-Type).")
@click.option("--method", "-X", type=click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
              case_sensitive=False), default=None, show_default="POST with a body, else GET", help="HTTP method.")
@click.option("--concurrency", "-c", "levels", metavar="N,N,...", default="1,8,64", callback=_levels,
              help="Connections, each with one request in flight; one measurement per value.")
@click.option("--duration", "-d", metavar="DURATION", default="10s", callback=_duration,
              help="Measured time per concurrency: 10, 10s, 500ms, 1m.")
@click.option("--warmup", "-w", metavar="DURATION", default="2s", callback=_duration,
              help="Unmeasured time before each measurement (0 for none).")
@click.option("--timeout", metavar="DURATION", default="30s", callback=_duration,
              help="A request unanswered this long counts as an error (client_timeout).")
@click.option("--json-output", type=click.Path(dir_okay=False, writable=True), metavar="PATH", default=None,
              help="Also write the results as JSON to PATH.")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), metavar="PATH", default=None,
              help="Also draw latency by percentile and throughput vs concurrency to PATH (PNG; needs "
                   "mest[bench]).")
@click.option("--progress/--no-progress", default=None, show_default="when stderr is a terminal",
              help="Show a live progress line on stderr.")
def bench(url: str, body_files: Sequence[BinaryIO], json_body: str | None, headers: list[tuple[str, str]],
          method: str | None, levels: list[int], duration: float, warmup: float, timeout: float,
          json_output: str | None, plot: str | None, progress: bool | None) -> None:
    """Load-test URL: closed-loop clients at each concurrency, then a table of requests/s and latencies.

    \b
      mest bench http://127.0.0.1:5000/api/v1/predict --json '{"features": [[5.1, 3.5, 1.4, 0.2]]}'
      mest bench http://127.0.0.1:5000/health/live -c 1,16 -d 5s --plot latency.png

    Each connection sends a request, waits for the answer and sends the next at once (HTTP/1.1 keep-alive,
    http:// only). Latencies and REQ/S count 2xx answers; anything else is an error, by status or by what
    went wrong. Exits 1 when the server cannot be reached or every request failed.
    """
    from . import _benchplot

    if duration <= 0 or timeout <= 0:
        raise click.UsageError("--duration and --timeout must be more than 0.")
    if plot and _benchplot.matplotlib_missing():  # before the run, not after minutes of it
        raise click.ClickException(_benchplot.INSTALL_HINT)
    bodies, headers, method = _bench_request(body_files, json_body, headers, method)
    url = url if "://" in url else f"http://{url}"
    click.echo(f"mest bench: {method} {url}, concurrency {','.join(map(str, levels))}, {warmup:g}s warm-up + "
               f"{duration:g}s each", err=True)
    started = time.time()
    results = _run_levels(url, levels, progress if progress is not None else sys.stderr.isatty(), bodies=bodies,
                          duration_s=duration, warmup_s=warmup, request_timeout_s=timeout, method=method,
                          headers=headers)
    if results:
        click.echo(_bench_table(results))
    if json_output:
        # Header names only: their values may be credentials (X-API-Key, Authorization).
        report = {"url": url, "method": method, "header_names": [name for name, _ in headers],
                  "duration_s": duration, "warmup_s": warmup, "timeout_s": timeout, "started": started,
                  "mest_version": __version__, "results": [r.summary() for r in results]}
        with open(json_output, "w", encoding="utf-8") as f:
            f.write(json.dumps(report, indent=2) + "\n")
    succeeded = any(r.requests for r in results)
    if plot:
        if succeeded:
            _benchplot.write_plot(results, plot, f"mest bench: {method} {url}, {duration:g}s per concurrency")
        click.echo(f"Plot written to {plot}" if succeeded else "No plot: no request succeeded.", err=True)
    for r in results:
        if r.client_cpu > 0.9:
            click.echo(f"Warning: at concurrency {r.concurrency} the load generator used {100 * r.client_cpu:.0f}% "
                       "of its core: the client may be the limit, not the server.", err=True)
    if len(results) < len(levels):
        sys.exit(130)
    if not succeeded:
        errors: Counter[str] = Counter()
        for r in results:
            errors.update(r.errors)
        raise click.ClickException(f"every request failed: {_errors_cell(dict(errors))}.")


# -- deployment commands (mest.deploy) -----------------------------------------------------------------

from .deploy._cli import dockerfile_command, k8s_command  # noqa: E402  (registered last: they import the loader)
from .deploy._ray_cli import ray_group  # noqa: E402

main.add_command(dockerfile_command)
main.add_command(k8s_command)
main.add_command(ray_group)

if __name__ == "__main__":  # pragma: no cover
    main()
