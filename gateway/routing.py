"""Pure routing: config → ranked chains per category/endpoint, and client request → upstream URL.

Nothing here does I/O. The routing table is rebuilt whenever the config changes and is then
read-only, so request handlers share it without locks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from gateway.errors import (
    EndpointNotConfigured,
    InvalidDay,
    InvalidParameter,
    MissingCategory,
    UnknownCategory,
)
from schemas.config import EndpointConfig, GatewayConfig
from schemas.endpoints import API_PREFIX, DAY_NAMES, EndpointKey, EndpointSpec
from schemas.events import SourceRole

_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """One upstream in a chain: the primary itself (depth 0) or one of its fallbacks."""

    source_name: str
    base_url: str
    role: SourceRole
    depth: int
    timeout_s: float
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ChainPlan:
    """A primary and its ordered fallbacks; chains of an endpoint are ranked by ``priority``."""

    source_name: str
    priority: int
    links: tuple[LinkPlan, ...]


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    category: str
    config: EndpointConfig
    chains: tuple[ChainPlan, ...]

    @property
    def spec(self) -> EndpointSpec:
        return self.config.spec


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Active categories → endpoint → ranked chains, plus the names used in error messages."""

    routes: dict[str, dict[EndpointKey, EndpointRoute]]
    category_names: tuple[str, ...]

    def resolve(self, category: str | None, spec: EndpointSpec) -> EndpointRoute:
        """Find the route of one category, or raise the 400/404 that tells the client why.

        Args:
            category: the ``category`` query value (``None`` when absent).
            spec: the public endpoint being called.
        """
        if not category:
            raise MissingCategory(
                "query parameter 'category' is required",
                valid_categories=[*self.category_names, "all"],
            )
        endpoints = self.routes.get(category.lower())
        if endpoints is None:
            raise UnknownCategory(
                f"unknown or inactive category {category!r}",
                valid_categories=[*self.category_names, "all"],
            )
        route = endpoints.get(spec.key)
        if route is None:
            raise EndpointNotConfigured(
                f"category {category!r} does not serve {spec.path}",
                valid_endpoints=sorted(r.spec.path for r in endpoints.values()),
            )
        return route

    def routes_for_all(self, spec: EndpointSpec) -> list[EndpointRoute]:
        """Every active category's route for ``spec`` (``category=all``), in config order."""
        found = [eps[spec.key] for eps in self.routes.values() if spec.key in eps]
        if not found:
            raise EndpointNotConfigured(
                f"no active category serves {spec.path}",
                valid_categories=list(self.category_names),
            )
        return found


def build_chains(config: EndpointConfig) -> tuple[ChainPlan, ...]:
    """Rank the active primaries by priority (ties keep config order) and attach fallbacks."""
    chains = []
    active = [api for api in config.primary_apis if api.is_active]
    for api in sorted(active, key=lambda a: a.priority):
        timeout_s = api.timeout_seconds or config.timeout_seconds
        headers = tuple(api.headers.items())
        urls = [api.base_url, *config.fallback_apis.get(api.source_name, [])]
        links = tuple(
            LinkPlan(
                source_name=api.source_name,
                base_url=url,
                role=SourceRole.PRIMARY if depth == 0 else SourceRole.FALLBACK,
                depth=depth,
                timeout_s=timeout_s,
                headers=headers,
            )
            for depth, url in enumerate(urls)
        )
        chains.append(ChainPlan(api.source_name, api.priority, links))
    return tuple(chains)


def build_routing_table(config: GatewayConfig) -> RoutingTable:
    """Compile a config into the read-only table the request path uses."""
    routes: dict[str, dict[EndpointKey, EndpointRoute]] = {}
    names: list[str] = []
    for category in config.categories:
        if not category.is_active:
            continue
        names.append(category.name)
        endpoints: dict[EndpointKey, EndpointRoute] = {}
        for endpoint in category.endpoints:
            chains = build_chains(endpoint)
            if chains:
                endpoints[endpoint.spec.key] = EndpointRoute(category.name, endpoint, chains)
        routes[category.name.lower()] = endpoints
    return RoutingTable(routes=routes, category_names=tuple(names))


def concrete_rest(spec: EndpointSpec, day: str | None) -> str:
    """The path after ``/api/v1/`` that upstreams receive, e.g. ``jadwal-rilis/senin``."""
    rest = spec.path.removeprefix(API_PREFIX + "/")
    if "{day}" in rest:
        if day is None or day.lower() not in DAY_NAMES:
            raise InvalidDay(
                f"unknown day {day!r}",
                valid_days=sorted(DAY_NAMES),
            )
        rest = rest.replace("{day}", day.lower())
    return rest


def forwarded_params(
    items: Iterable[tuple[str, str]],
    *,
    max_params: int,
    max_length: int,
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """Split the client's query into the category and the bounded params to forward.

    Args:
        items: the query string's (name, value) pairs in their original order.
        max_params: the most parameters a request may carry (besides ``category``).
        max_length: the longest value accepted.

    Returns:
        ``(category, params)`` where params excludes ``category`` and keeps the client's order.
    """
    category: str | None = None
    params: list[tuple[str, str]] = []
    for name, value in items:
        if name == "category":
            if category is not None:
                raise InvalidParameter("'category' given more than once", parameter="category")
            category = value
            continue
        if not _PARAM_NAME.match(name):
            raise InvalidParameter(
                f"parameter name {name[:64]!r} must be 1-64 letters, digits or _.-[]",
                parameter=name[:64],
            )
        if len(value) > max_length:
            raise InvalidParameter(
                f"parameter {name!r} is {len(value)} characters; at most {max_length} allowed",
                parameter=name,
            )
        params.append((name, value))
        if len(params) > max_params:
            raise InvalidParameter(
                f"too many query parameters; at most {max_params} besides 'category'",
                parameter=name,
            )
    return category, tuple(params)


def require_params(spec: EndpointSpec, params: Sequence[tuple[str, str]]) -> None:
    """Raise 400 when a parameter the endpoint needs (e.g. ``q`` for search) is absent or blank."""
    present = {name for name, value in params if value.strip()}
    for required in spec.required_params:
        if required not in present:
            raise InvalidParameter(
                f"query parameter {required!r} is required for {spec.path}",
                parameter=required,
                required_parameters=list(spec.required_params),
            )


def upstream_url(base_url: str, rest: str, params: Sequence[tuple[str, str]]) -> str:
    """``<base_url>/<rest>?<params>`` — the SPEC §3 upstream URL rule."""
    url = f"{base_url}/{rest}"
    return f"{url}?{urlencode(params)}" if params else url
