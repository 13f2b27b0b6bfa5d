"""Pure parts of the API edge: which paths are API, which endpoint, how queries decode."""

from __future__ import annotations

import pytest

from gateway.api import is_api_path, match_endpoint
from gateway.edge import query_pairs
from gateway.errors import InvalidParameter
from schemas.endpoints import EndpointKey


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1", True),
        ("/api/v1/", True),
        ("/api/v1/home", True),
        ("/api/v10/home", False),
        ("/api/v1home", False),
        ("/health", False),
        ("/docs", False),
    ],
)
def test_api_paths_are_the_prefix_and_what_is_under_it(path: str, expected: bool) -> None:
    assert is_api_path(path) is expected


def test_endpoints_match_exact_paths_and_one_day_segment() -> None:
    home = match_endpoint("/api/v1/home")
    day = match_endpoint("/api/v1/jadwal-rilis/Senin")
    week = match_endpoint("/api/v1/jadwal-rilis")
    assert home is not None and home[0].key is EndpointKey.HOME and home[1] is None
    assert day is not None and day[0].key is EndpointKey.JADWAL_RILIS_DAY and day[1] == "Senin"
    assert week is not None and week[0].key is EndpointKey.JADWAL_RILIS
    for unknown in (
        "/api/v1/home/",
        "/api/v1/jadwal-rilis/",
        "/api/v1/jadwal-rilis/a/b",
        "/api/v1",
    ):
        assert match_endpoint(unknown) is None, unknown


def test_query_pairs_keep_order_blanks_and_repeats_and_decode_utf8() -> None:
    raw = "q=caf\u00e9&q=one+piece%21&empty=&category=anime".encode()
    assert query_pairs(raw, 10) == [
        ("q", "caf\u00e9"),
        ("q", "one piece!"),
        ("empty", ""),
        ("category", "anime"),
    ]


def test_query_pairs_replace_invalid_utf8_instead_of_failing() -> None:
    assert query_pairs(b"q=%FF%FEok&bad\xff=1", 10) == [("q", "\ufffd\ufffdok"), ("bad\ufffd", "1")]


def test_query_pairs_refuse_more_fields_than_the_bound() -> None:
    assert len(query_pairs(b"&".join([b"a=1"] * 4), 4)) == 4
    with pytest.raises(InvalidParameter, match="more than 4 fields"):
        query_pairs(b"&".join([b"a=1"] * 5), 4)
    assert query_pairs(b"", 4) == []
