"""Live config reload: re-read the config file into a running gateway (``kill -HUP``).

The new file is validated first; an invalid one changes nothing and its problems are logged.
A valid one swaps the routing table (requests in flight keep the table they started with), the
prober picks the new targets up within a second, and a ``config_change`` event records who
did what, with before/after summaries.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

from gateway.config_file import ConfigFileError, load_config_file
from gateway.container import Container
from schemas.config import GatewayConfig
from schemas.events import ConfigChangeEvent

log = logging.getLogger("apicat.reload")


def _summary(config: GatewayConfig) -> str:
    return orjson.dumps(
        {
            category.name: {
                "is_active": category.is_active,
                "endpoints": [endpoint.path for endpoint in category.endpoints],
                "sources": sorted(
                    {api.source_name for e in category.endpoints for api in e.primary_apis}
                ),
            }
            for category in config.categories
        }
    ).decode()


def reload_config(container: Container, path: Path, actor: str = "sighup") -> list[str]:
    """Apply ``path`` to ``container`` if it is valid.

    Returns:
        The problems that kept the file from being applied (empty when it was applied).
    """
    try:
        new = load_config_file(path)
    except ConfigFileError as exc:
        log.error("config %s not reloaded: %s", path, "; ".join(exc.problems))
        return exc.problems
    before = _summary(container.config)
    container.apply_config(new)
    container.emitter.emit(
        ConfigChangeEvent(
            instance=container.settings.instance,
            actor=actor,
            action="reload",
            target=str(path),
            before=before,
            after=_summary(new),
        )
    )
    log.warning("config %s reloaded: %s", path, ", ".join(container.routing.category_names))
    return []
