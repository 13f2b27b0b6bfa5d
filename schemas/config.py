"""The category → endpoint → source configuration, in the PRD's JSON import/export format.

The PRD example (seed 000 §2.1) loads exactly as written; everything beyond it is optional with
defaults. Unknown keys are rejected so that a typo is reported instead of silently ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.endpoints import ENDPOINTS_BY_PATH, EndpointSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RESERVED_CATEGORY_NAMES = frozenset({"all"})
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
DEFAULT_STALE_TTL_SECONDS = 86_400
DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_MIN_CONFIDENCE = 0.5


def check_base_url(value: str) -> str:
    """Accept absolute http(s) URLs without query or fragment; strip a trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value.rstrip("/")


BaseUrl = Annotated[str, Field(min_length=8, max_length=2048), AfterValidator(check_base_url)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
TimeoutSeconds = Annotated[float, Field(gt=0, le=120)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrimaryApi(_Strict):
    """One primary source of an endpoint; its fallbacks inherit its headers and timeout."""

    source_name: Name
    base_url: BaseUrl
    priority: int = Field(ge=0, le=1_000_000)
    timeout_seconds: TimeoutSeconds | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    is_active: bool = True

    @field_validator("headers")
    @classmethod
    def _headers_are_sendable(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            if "\r" in header_value or "\n" in header_value:
                raise ValueError(f"header {name!r} value must not contain line breaks")
        return value


class EndpointConfig(_Strict):
    """One public endpoint of a category, with its ranked sources and cache/timeout policy."""

    path: str
    primary_apis: list[PrimaryApi] = Field(min_length=1)
    fallback_apis: dict[str, list[BaseUrl]] = Field(default_factory=dict)
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 86_400)
    """``None`` means the endpoint's default (home 900 s, anime-detail 3600 s, ...)."""
    stale_ttl_seconds: int = Field(default=DEFAULT_STALE_TTL_SECONDS, ge=0, le=30 * 86_400)
    timeout_seconds: TimeoutSeconds = DEFAULT_TIMEOUT_SECONDS
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0, le=1)

    @field_validator("path")
    @classmethod
    def _path_is_known(cls, value: str) -> str:
        normalized = value.rstrip("/") or value
        if normalized not in ENDPOINTS_BY_PATH:
            choices = ", ".join(sorted(ENDPOINTS_BY_PATH))
            raise ValueError(f"unknown endpoint {value!r}; expected one of: {choices}")
        return normalized

    @model_validator(mode="after")
    def _sources_are_consistent(self) -> Self:
        names = [api.source_name for api in self.primary_apis]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"primary_apis: duplicate source_name {', '.join(duplicates)}")
        unknown = sorted(set(self.fallback_apis) - set(names))
        if unknown:
            raise ValueError(
                f"fallback_apis: {', '.join(unknown)} is not a primary source_name of this "
                f"endpoint (primaries: {', '.join(names)})"
            )
        return self

    @property
    def spec(self) -> EndpointSpec:
        return ENDPOINTS_BY_PATH[self.path]

    @property
    def effective_ttl_seconds(self) -> int:
        return self.ttl_seconds if self.ttl_seconds is not None else self.spec.default_ttl_seconds


class ProbeConfig(_Strict):
    """What the health prober asks every upstream of a category, and how often."""

    interval_seconds: int | None = Field(default=None, ge=10, le=86_400)
    """``None`` means ``APICAT_PROBE_INTERVAL_SECONDS`` (default 600)."""
    path: str | None = None
    """An endpoint path of the category (``{day}`` → ``senin``); default: its first endpoint."""
    params: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: TimeoutSeconds | None = None
    """``None`` means the probed endpoint's ``timeout_seconds``."""

    @field_validator("path")
    @classmethod
    def _path_is_known(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalized = value.rstrip("/") or value
        if normalized not in ENDPOINTS_BY_PATH:
            choices = ", ".join(sorted(ENDPOINTS_BY_PATH))
            raise ValueError(f"unknown endpoint {value!r}; expected one of: {choices}")
        return normalized


class CategoryConfig(_Strict):
    """A category such as ``anime`` or ``drakor`` and the endpoints it serves."""

    name: Name
    is_active: bool = True
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)

    @field_validator("name")
    @classmethod
    def _name_is_not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_CATEGORY_NAMES:
            raise ValueError(f"{value!r} is reserved (category=all means every category)")
        return value

    @model_validator(mode="after")
    def _paths_are_unique(self) -> Self:
        paths = [endpoint.path for endpoint in self.endpoints]
        duplicates = sorted({path for path in paths if paths.count(path) > 1})
        if duplicates:
            raise ValueError(f"endpoints: {', '.join(duplicates)} configured more than once")
        if self.probe.path is not None:
            if self.probe.path not in paths:
                raise ValueError(
                    f"probe.path {self.probe.path!r} is not an endpoint of this category "
                    f"(endpoints: {', '.join(paths) or 'none'})"
                )
            missing = set(ENDPOINTS_BY_PATH[self.probe.path].required_params) - set(
                self.probe.params
            )
            if missing:
                raise ValueError(
                    f"probe.params must give {', '.join(sorted(missing))} for "
                    f"probe.path {self.probe.path!r}"
                )
        return self


class GatewayConfig(_Strict):
    """The whole routing configuration, as imported from or exported to JSON."""

    categories: list[CategoryConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _category_names_are_unique(self) -> Self:
        names = [category.name.lower() for category in self.categories]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"categories: {', '.join(duplicates)} defined more than once")
        return self


def describe_errors(error: ValidationError) -> list[str]:
    """Turn a pydantic error into ``path: reason`` lines, one per bad field.

    Args:
        error: the error raised while validating a config document.

    Returns:
        Lines such as ``categories[0].endpoints[1].primary_apis[0].base_url: must start with
        http:// or https://``.
    """
    lines = []
    for item in error.errors(include_url=False):
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{path or '<document>'}: {message}")
    return lines
