"""``mest nginx``: print an nginx configuration for a Mest service (:mod:`mest.server.nginx`)."""

from __future__ import annotations

import click

from .server.nginx import NginxConfig, render
from .server.options import ServeOptions
from .settings import Settings

__all__ = ["nginx"]


@click.command()
@click.option("--upstream", "upstreams", multiple=True, default=(f"{ServeOptions.host}:{ServeOptions.port}",),
              show_default=True,
              help="host:port of a mest serve instance (repeat for several).")
@click.option("--listen", default="80", show_default=True, help="nginx's listen address or port.")
@click.option("--server-name", default="_", show_default=True, help="nginx's server_name.")
@click.option("--max-body-size", envvar="MEST_MAX_BODY_SIZE", type=click.IntRange(min=0),
              default=Settings.max_body_size, show_default=True, show_envvar=True,
              help="The app's max_body_size: nginx refuses larger bodies with Mest's JSON 413.")
@click.option("--body-timeout", envvar="MEST_BODY_TIMEOUT", type=click.FloatRange(min=0, min_open=True),
              default=Settings.body_timeout, show_default=True, show_envvar=True,
              help="Seconds nginx waits between two reads of a client's head or body.")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True), default=75.0, show_default=True,
              help="Seconds nginx waits for Mest's answer (keep it above mest serve --timeout).")
@click.option("--standalone", is_flag=True, help="A whole nginx.conf (nginx -p DIR -c nginx.conf), not a conf.d file.")
@click.option("--user", default=None, help="The user directive of a --standalone file.")
def nginx(upstreams: tuple[str, ...], listen: str, server_name: str, max_body_size: int, body_timeout: float,
          read_timeout: float, standalone: bool, user: str | None) -> None:
    """Print an nginx configuration that puts a buffering reverse proxy in front of mest serve."""
    try:
        config = NginxConfig(
            upstreams=upstreams, listen=listen, server_name=server_name, max_body_size=max_body_size,
            body_timeout=body_timeout, read_timeout=read_timeout, standalone=standalone, user=user,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(render(config), nl=False)
