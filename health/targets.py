"""Pure: the routing config → the list of upstreams to probe and what to ask each of them."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.routing import build_chains, concrete_rest, upstream_url
from schemas.config import CategoryConfig, EndpointConfig, GatewayConfig
from schemas.endpoints import ENDPOINTS_BY_KEY, EndpointKey

# /jadwal-rilis/{day} needs a concrete day; any valid one proves the upstream answers.
PROBE_DAY = "senin"


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One upstream base URL of one category, with the request that probes it."""

    category: str
    source_name: str
    """The primary this URL belongs to (a fallback URL carries its primary's name)."""
    base_url: str
    url: str
    """The full probe request: ``<base_url>/<probe path>?<probe params>``."""
    endpoint_key: EndpointKey
    interval_s: float
    timeout_s: float
    headers: tuple[tuple[str, str], ...]
    min_confidence: float

    @property
    def key(self) -> str:
        """Stable identity for scheduling and leases: ``category|base_url``."""
        return f"{self.category}|{self.base_url}"

    @property
    def endpoint_path(self) -> str:
        """The probed endpoint's path template (``/api/v1/home``), as events name endpoints."""
        return ENDPOINTS_BY_KEY[self.endpoint_key].path


def probe_targets(config: GatewayConfig, default_interval_s: int) -> list[ProbeTarget]:
    """Every upstream the prober watches, in config order, each once per category.

    One target per unique (active category, base URL of an active primary or of one of its
    fallbacks). Inactive categories and inactive primaries (with their fallbacks) are not
    probed: the gateway never calls them either.

    Args:
        config: the routing configuration.
        default_interval_s: the interval of categories without ``probe.interval_seconds``
            (``APICAT_PROBE_INTERVAL_SECONDS``).

    Returns:
        The targets; empty when nothing is active.
    """
    targets: list[ProbeTarget] = []
    for category in config.categories:
        if category.is_active:
            targets.extend(_category_targets(category, default_interval_s))
    return targets


def _category_targets(category: CategoryConfig, default_interval_s: int) -> list[ProbeTarget]:
    probed = _probed_endpoint(category)
    if probed is None:
        return []
    probe = category.probe
    rest = concrete_rest(probed.spec, PROBE_DAY)
    params = tuple(probe.params.items())
    interval_s = float(probe.interval_seconds or default_interval_s)
    targets: dict[str, ProbeTarget] = {}
    for endpoint in category.endpoints:
        for chain in build_chains(endpoint):
            for link in chain.links:
                if link.base_url in targets:
                    continue
                targets[link.base_url] = ProbeTarget(
                    category=category.name,
                    source_name=link.source_name,
                    base_url=link.base_url,
                    url=upstream_url(link.base_url, rest, params),
                    endpoint_key=probed.spec.key,
                    interval_s=interval_s,
                    timeout_s=(
                        probe.timeout_seconds
                        or _source_timeout_s(endpoint, link.source_name)
                        or probed.timeout_seconds
                    ),
                    headers=link.headers,
                    min_confidence=probed.min_confidence,
                )
    return list(targets.values())


def _probed_endpoint(category: CategoryConfig) -> EndpointConfig | None:
    """The category's ``probe.path`` endpoint, else its first endpoint a probe can call.

    Without ``probe.path``, endpoints that need a parameter the probe does not carry (search
    needs ``q``) are passed over: probing them would mark every upstream Down.
    """
    given = set(category.probe.params)
    for endpoint in category.endpoints:
        if category.probe.path is not None:
            if endpoint.path == category.probe.path:
                return endpoint
        elif set(endpoint.spec.required_params) <= given:
            return endpoint
    return None


def _source_timeout_s(endpoint: EndpointConfig, source_name: str) -> float | None:
    # A source's own timeout wins over the endpoint's, as on the gateway's request path.
    for api in endpoint.primary_apis:
        if api.source_name == source_name:
            return api.timeout_seconds
    return None
