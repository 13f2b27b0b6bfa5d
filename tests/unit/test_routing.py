from __future__ import annotations

import pytest

from gateway.errors import (
    EndpointNotConfigured,
    InvalidDay,
    InvalidParameter,
    MissingCategory,
    UnknownCategory,
)
from gateway.routing import (
    build_routing_table,
    concrete_rest,
    forwarded_params,
    require_params,
    upstream_url,
)
from schemas.config import GatewayConfig
from schemas.endpoints import ENDPOINTS_BY_KEY, EndpointKey
from schemas.events import SourceRole

HOME = ENDPOINTS_BY_KEY[EndpointKey.HOME]
SEARCH = ENDPOINTS_BY_KEY[EndpointKey.SEARCH]
DAY = ENDPOINTS_BY_KEY[EndpointKey.JADWAL_RILIS_DAY]


def config() -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "categories": [
                {
                    "name": "anime",
                    "endpoints": [
                        {
                            "path": "/api/v1/home",
                            "timeout_seconds": 7,
                            "primary_apis": [
                                {"source_name": "b", "base_url": "http://b/v1", "priority": 2},
                                {
                                    "source_name": "a",
                                    "base_url": "http://a/v1/",
                                    "priority": 1,
                                    "timeout_seconds": 3,
                                    "headers": {"X-Key": "k"},
                                },
                                {
                                    "source_name": "off",
                                    "base_url": "http://off/v1",
                                    "priority": 0,
                                    "is_active": False,
                                },
                            ],
                            "fallback_apis": {"a": ["http://a1/v1", "http://a2/v1"]},
                        }
                    ],
                },
                {"name": "old", "is_active": False, "endpoints": []},
            ]
        }
    )


def test_chains_rank_by_priority_and_skip_inactive_sources() -> None:
    route = build_routing_table(config()).resolve("anime", HOME)
    assert [chain.source_name for chain in route.chains] == ["a", "b"]


def test_chain_is_primary_then_fallbacks_in_order_inheriting_timeout_and_headers() -> None:
    chain = build_routing_table(config()).resolve("anime", HOME).chains[0]
    assert [(link.base_url, link.role, link.depth) for link in chain.links] == [
        ("http://a/v1", SourceRole.PRIMARY, 0),
        ("http://a1/v1", SourceRole.FALLBACK, 1),
        ("http://a2/v1", SourceRole.FALLBACK, 2),
    ]
    assert {link.timeout_s for link in chain.links} == {3}
    assert all(link.headers == (("X-Key", "k"),) for link in chain.links)
    other = build_routing_table(config()).resolve("anime", HOME).chains[1]
    assert other.links[0].timeout_s == 7, "sources without their own timeout use the endpoint's"


def test_category_lookup_is_case_insensitive() -> None:
    assert build_routing_table(config()).resolve("ANIME", HOME).category == "anime"


def test_missing_unknown_and_inactive_categories_name_the_valid_choices() -> None:
    table = build_routing_table(config())
    with pytest.raises(MissingCategory) as missing:
        table.resolve(None, HOME)
    assert missing.value.extra["valid_categories"] == ["anime", "all"]
    for name in ("drakor", "old"):
        with pytest.raises(UnknownCategory) as unknown:
            table.resolve(name, HOME)
        assert unknown.value.extra["valid_categories"] == ["anime", "all"]


def test_endpoint_not_served_by_category_lists_its_endpoints() -> None:
    with pytest.raises(EndpointNotConfigured) as error:
        build_routing_table(config()).resolve("anime", SEARCH)
    assert error.value.extra["valid_endpoints"] == ["/api/v1/home"]


def test_upstream_url_is_base_plus_rest_plus_query_without_category() -> None:
    category, params = forwarded_params(
        [("q", "one piece"), ("category", "anime"), ("page", "2")], max_params=5, max_length=50
    )
    assert category == "anime"
    assert upstream_url("http://a/v1", "search", params) == "http://a/v1/search?q=one+piece&page=2"
    assert upstream_url("http://a/v1", "home", ()) == "http://a/v1/home"


def test_day_is_substituted_lowercased_and_checked() -> None:
    assert concrete_rest(DAY, "Senin") == "jadwal-rilis/senin"
    assert concrete_rest(HOME, None) == "home"
    with pytest.raises(InvalidDay) as error:
        concrete_rest(DAY, "someday")
    assert "senin" in error.value.extra["valid_days"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([("category", "a"), ("category", "b")], "more than once"),
        ([("bad name!", "x")], "must be 1-64"),
        ([("q", "x" * 51)], "at most 50"),
        ([(f"p{i}", "x") for i in range(6)], "too many"),
    ],
)
def test_query_bounds_reject_with_a_precise_message(
    items: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(InvalidParameter, match=message):
        forwarded_params(items, max_params=5, max_length=50)


def test_required_parameter_must_be_present_and_not_blank() -> None:
    require_params(SEARCH, [("q", "naruto")])
    for params in ([], [("q", "  ")]):
        with pytest.raises(InvalidParameter, match="'q' is required"):
            require_params(SEARCH, params)
