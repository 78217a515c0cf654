"""``mest bench``: the command line of the load generator (mest.loadgen): parse the flags, run one measurement
per concurrency with a live progress line, print the table, write JSON and the plot."""

from __future__ import annotations

import json
import math
import mimetypes
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from .._version import __version__

if TYPE_CHECKING:
    from ._engine import LoadResult, Progress

__all__ = ["bench"]


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
    from ._engine import LoadError, run_load

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


@click.command(context_settings={"show_default": True})
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
    from . import _plot

    if duration <= 0 or timeout <= 0:
        raise click.UsageError("--duration and --timeout must be more than 0.")
    if plot and _plot.matplotlib_missing():  # before the run, not after minutes of it
        raise click.ClickException(_plot.INSTALL_HINT)
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
            _plot.write_plot(results, plot, f"mest bench: {method} {url}, {duration:g}s per concurrency")
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


