"""Typed, immutable process settings read once from an injected ``APICAT_*`` environment."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from limits import parse as parse_rate_limit
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "APICAT_"


def _default_instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Everything a process reads from its environment. Build with :meth:`from_environ`."""

    model_config = {"env_prefix": ENV_PREFIX, "frozen": True, "extra": "ignore"}

    data_dir: Path = Path(".apicat")
    database_url: str | None = None
    redis_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_topic_prefix: str = Field(default="apicat.events.", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    clickhouse_url: str | None = None
    embedded_clickhouse_port: int = Field(default=8124, ge=0, le=65535)
    """Loopback port of the embedded store's ClickHouse HTTP endpoint (0 = any free port)."""
    admin_password: SecretStr | None = None

    rate_limit: str = "120/minute"
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    """CIDRs whose ``X-Forwarded-For`` is believed; empty means the socket peer is the client."""

    request_deadline_seconds: float = Field(default=30.0, gt=0, le=300)
    retry_attempts: int = Field(default=2, ge=1, le=10)
    retry_initial_wait_seconds: float = Field(default=0.1, ge=0, le=10)
    retry_max_wait_seconds: float = Field(default=1.0, ge=0, le=60)
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_open_seconds: float = Field(default=300.0, gt=0, le=86400)
    max_upstream_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_upstream_connections: int = Field(default=200, ge=1)
    cache_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    refresh_ahead_fraction: float = Field(default=0.1, ge=0, lt=1)
    """Hits in the last fraction of an entry's TTL refresh it in the background."""
    singleflight_lock_seconds: float = Field(default=10.0, gt=0, le=120)
    max_query_params: int = Field(default=20, ge=1, le=200)
    max_param_length: int = Field(default=200, ge=1, le=4096)
    expose_upstream_urls: bool = False
    """Put upstream URLs into 503 bodies; off by default because they are internal."""

    probe_interval_seconds: int = Field(default=600, ge=10, le=86_400)
    """Default health-probe interval per upstream (categories may override)."""
    probe_down_after: int = Field(default=1, ge=1, le=100)
    """Consecutive failed probes that mark an upstream Down.

    1 by default: Down only moves a link to the end of its chain (it is still tried when the
    healthy links fail), so a false alarm costs little, while detection and recovery both
    stay within one probe interval. Raise it to trade detection time for fewer flips.
    """

    instance: str = Field(default_factory=_default_instance_name)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        try:
            parse_rate_limit(value)
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a rate limit; use forms like '120/minute', '5/second'"
            ) from exc
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: object) -> Settings:
        """Read settings from ``environ`` (not ``os.environ``) plus explicit overrides.

        Args:
            environ: the environment to read ``APICAT_*`` variables from.
            **overrides: field values that win over the environment (CLI flags, tests).
        """
        source_environ = dict(environ)

        class _InjectedEnvSource(EnvSettingsSource):
            def _load_env_vars(self) -> Mapping[str, str | None]:
                return parse_env_vars(
                    source_environ, self.case_sensitive, self.env_ignore_empty,
                    self.env_parse_none_str,
                )  # fmt: skip

        class _Injected(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (init_settings, _InjectedEnvSource(settings_cls))

        settings: Settings = _Injected(**overrides)
        return settings
