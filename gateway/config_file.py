"""Reading a PRD-format JSON config file into a validated ``GatewayConfig``."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import ValidationError

from schemas.config import GatewayConfig, describe_errors

MAX_CONFIG_BYTES = 10 * 1024 * 1024


class ConfigFileError(Exception):
    """The file cannot be used; ``problems`` lists every reason, one ``path: reason`` each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)")
        self.source = source
        self.problems = problems


def parse_config(raw: bytes, source: str) -> GatewayConfig:
    """Validate config JSON bytes; ``source`` names them in error messages."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigFileError(source, [f"<document>: not valid JSON ({exc})"]) from None
    if not isinstance(document, dict):
        raise ConfigFileError(source, ["<document>: must be a JSON object with 'categories'"])
    try:
        return GatewayConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigFileError(source, describe_errors(exc)) from None


def load_config_file(path: Path) -> GatewayConfig:
    """Read and validate ``path``; every failure is a ``ConfigFileError``."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigFileError(str(path), [f"<file>: {size} bytes; at most 10 MiB"])
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(str(path), [f"<file>: cannot read ({exc.strerror})"]) from None
    return parse_config(raw, str(path))
