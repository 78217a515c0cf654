"""``mest ray serve`` and ``mest ray config``: a Mest app as a Ray Serve application (``pip install 'mest[ray]'``).

Ray is imported only when a subcommand runs, so ``mest --help`` stays fast and works without the extra.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from ..config import ConfigError
from ..server.loader import AppLoadError

__all__ = ["ray_group"]


def _need_ray() -> None:
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("a2wsgi") is None:
        raise click.ClickException("mest ray needs Ray Serve and a2wsgi: pip install 'mest[ray]'")


@contextlib.contextmanager
def _app_errors(spec: str) -> Iterator[None]:
    try:
        yield
    except click.ClickException:
        raise
    except AppLoadError as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigError as exc:
        raise click.ClickException(f"Invalid configuration: {exc}") from None


def _scaling(replicas: int | None, autoscale: str | None, autoscaling_options: tuple[str, ...]) -> dict[str, Any]:
    """``num_replicas`` or ``autoscaling_config`` from the flags."""
    if replicas is not None and autoscale is not None:
        raise click.UsageError("--replicas and --autoscale exclude each other.")
    if autoscale is None:
        if autoscaling_options:
            raise click.UsageError("--autoscaling-option needs --autoscale MIN:MAX.")
        return {"num_replicas": replicas or 1}
    low, sep, high = autoscale.partition(":")
    if not sep or not low.isdigit() or not high.isdigit() or int(low) > int(high) or int(high) < 1:
        raise click.BadParameter(f"{autoscale!r}: use MIN:MAX, like 1:4", param_hint="--autoscale")
    config: dict[str, Any] = {"min_replicas": int(low), "max_replicas": int(high)}
    for item in autoscaling_options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--autoscaling-option")
        try:
            config[key] = json.loads(value)
        except ValueError:
            config[key] = value
    return {"autoscaling_config": config}


def _deployment_flags(command: Any) -> Any:
    options = [
        click.option("--replicas", type=click.IntRange(min=1), default=None, show_default="1",
                     help="A fixed number of replicas."),
        click.option("--autoscale", default=None, metavar="MIN:MAX",
                     help="Autoscale between MIN and MAX replicas (Ray's autoscaler)."),
        click.option("--autoscaling-option", "autoscaling_options", multiple=True, metavar="KEY=VALUE",
                     help="Another Ray autoscaling_config option, e.g. target_ongoing_requests=4 (repeatable)."),
        click.option("--max-ongoing-requests", type=click.IntRange(min=1), default=None,
                     show_default="2 x the largest max_batch_size, at least 100",
                     help="Requests a replica handles at once (and the WSGI bridge's threads)."),
        click.option("--num-cpus", type=click.FloatRange(min=0), default=None, help="CPUs Ray reserves per replica."),
        click.option("--name", default="mest", show_default=True, help="The Serve application's name."),
        click.option("--route-prefix", default="/", show_default=True, help="Where the app is mounted."),
        click.option("--host", default="127.0.0.1", show_default=True, help="Interface of Ray's HTTP proxy."),
        click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
                     help="Port of Ray's HTTP proxy."),
        click.option("--proxy-location", default="EveryNode", show_default=True,
                     type=click.Choice(["EveryNode", "HeadOnly", "Disabled"]),
                     help="Where Ray runs HTTP proxies: on every node, or only on the head node."),
    ]
    for option in reversed(options):
        command = option(command)
    return click.argument("app", metavar="APP", envvar="MEST_APP")(command)


def _options(flags: dict[str, Any]) -> dict[str, Any]:
    options = _scaling(flags["replicas"], flags["autoscale"], flags["autoscaling_options"])
    if flags["max_ongoing_requests"] is not None:
        options["max_ongoing_requests"] = flags["max_ongoing_requests"]
    if flags["num_cpus"] is not None:
        options["ray_actor_options"] = {"num_cpus": flags["num_cpus"]}
    return options


@click.group("ray")
def ray_group() -> None:
    """Serve an app on Ray Serve (pip install 'mest[ray]'); see docs/deploy.md."""


@ray_group.command("serve")
@_deployment_flags
@click.option("--address", default=None,
              help="The Ray cluster to deploy on (HOST:PORT, ray://..., or auto); default: start a local one.")
def serve_command(app: str, address: str | None, **flags: Any) -> None:
    """Deploy APP on a Ray cluster and serve it through Ray's HTTP proxy until SIGTERM or Ctrl-C.

    On exit the application is deleted (and a local cluster started for it stopped). For a deployment that
    outlives the command, write a config with `mest ray config` and run `serve deploy`.
    """
    _need_ray()
    import ray
    from ray import serve

    from . import ray as mest_ray

    with _app_errors(app):
        options = _options(flags)
        ongoing = mest_ray.deployment_options(app, **options)["max_ongoing_requests"]
        application = mest_ray.application(app, **options)
    ray.init(address=address or "local", include_dashboard=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(proxy_location=flags["proxy_location"],
                    http_options={"host": flags["host"], "port": flags["port"]})
        serve.run(application, name=flags["name"], route_prefix=flags["route_prefix"], blocking=False)
        scaling = options.get("num_replicas") or "autoscaling {min_replicas}-{max_replicas}".format(
            **options.get("autoscaling_config", {}))
        click.echo(f" * Mest serving {app} through Ray Serve on http://{flags['host']}:{flags['port']}"
                   f"{flags['route_prefix'].rstrip('/')} ({scaling} replicas, "
                   f"max_ongoing_requests {ongoing})")
        sys.stdout.flush()
        stop.wait()
    finally:
        with contextlib.suppress(Exception):
            serve.delete(flags["name"])
        if address is None:
            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@ray_group.command("config")
@_deployment_flags
@click.option("--working-dir", default=None,
              help="The app's code for every node: a remote URI (s3://, gs://, https://...zip), or a folder "
                   "that exists on every node (written as local://PATH).")
@click.option("--output", "-o", type=click.File("w"), default="-", show_default="stdout", help="Where to write.")
def config_command(app: str, working_dir: str | None, output: Any, **flags: Any) -> None:
    """Write the Serve config file (YAML) for APP: deploy it with `serve deploy FILE`."""
    _need_ray()
    import yaml

    from . import ray as mest_ray

    with _app_errors(app):
        options = mest_ray.deployment_options(app, **_options(flags))
    application: dict[str, Any] = {
        "name": flags["name"],
        "route_prefix": flags["route_prefix"],
        "import_path": "mest.deploy.ray:build",
        "args": {"app": app, "threads": options["max_ongoing_requests"]},
        "deployments": [options],
    }
    if working_dir is not None:
        uri = working_dir if "://" in working_dir else "local://" + os.path.abspath(working_dir)
        application["runtime_env"] = {"working_dir": uri}
    config = {
        "proxy_location": flags["proxy_location"],
        "http_options": {"host": flags["host"], "port": flags["port"]},
        "applications": [application],
    }
    output.write(yaml.safe_dump(config, sort_keys=False))
