"""The ``demo-upstreams`` command: serve the fake upstreams until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import click
import orjson

from demo.catalog import DEFAULT_SOURCES
from demo.knobs import Knobs, KnobsError, merge_sources
from demo.server import serve_demo_upstreams


def load_sources(knobs_file: Path | None, include_defaults: bool = True) -> dict[str, Knobs]:
    """The sources to serve: the defaults, overlaid with a ``--knobs`` JSON file.

    Args:
        knobs_file: JSON mapping source name → knob fields, or ``None``.
        include_defaults: start from :data:`demo.catalog.DEFAULT_SOURCES` (else from nothing).

    Returns:
        Source name → knobs.

    Raises:
        KnobsError: with ``path: reason`` lines when the file is unreadable or invalid.
    """
    base = dict(DEFAULT_SOURCES) if include_defaults else {}
    if knobs_file is None:
        sources = base
    else:
        try:
            document = orjson.loads(knobs_file.read_bytes())
        except OSError as error:
            raise KnobsError([f"{knobs_file}: cannot read: {error.strerror}"]) from None
        except orjson.JSONDecodeError as error:
            raise KnobsError([f"{knobs_file}: not valid JSON: {error}"]) from None
        try:
            sources = merge_sources(base, document)
        except KnobsError as error:
            raise KnobsError([f"{knobs_file}: {line}" for line in error.lines]) from None
    if not sources:
        raise KnobsError(["no sources to serve: name at least one in --knobs"])
    return sources


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform; asyncio's loop works too
        return None
    return uvloop.new_event_loop


@click.command("demo-upstreams")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8090,
    show_default=True,
    help="TCP port; 0 picks a free one (printed once listening).",
)
@click.option(
    "--knobs",
    "knobs_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file mapping source name to knob fields, merged over the defaults.",
)
@click.option("--no-defaults", is_flag=True, help="Serve only the sources named in --knobs.")
def demo_upstreams(host: str, port: int, knobs_file: Path | None, no_defaults: bool) -> None:
    """Serve deterministic fake anime/drama upstreams with failure knobs.

    Each source answers under /<source>/v1/...; /_demo/knobs, /_demo/stats and
    /_demo/reset control them at runtime.
    """
    try:
        sources = load_sources(knobs_file, include_defaults=not no_defaults)
    except KnobsError as error:
        raise click.BadParameter("\n".join(error.lines), param_hint="'--knobs'") from None
    shown_host = f"[{host}]" if ":" in host else host

    def ready(bound_port: int) -> None:
        click.echo(f"demo upstreams listening on http://{shown_host}:{bound_port}")
        sys.stdout.flush()

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve_demo_upstreams(host, port, sources, ready=ready))
    except OSError as error:
        raise click.ClickException(f"cannot listen on {shown_host}:{port}: {error}") from None
