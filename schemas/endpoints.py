"""The catalogue of public endpoints: path templates, cache defaults and accepted parameters."""

from __future__ import annotations

import enum
from dataclasses import dataclass

API_PREFIX = "/api/v1"


class EndpointKey(enum.StrEnum):
    """Stable identifiers of the eight public endpoints (PRD section 4)."""

    HOME = "home"
    JADWAL_RILIS = "jadwal-rilis"
    JADWAL_RILIS_DAY = "jadwal-rilis-day"
    ANIME_TERBARU = "anime-terbaru"
    MOVIE = "movie"
    ANIME_DETAIL = "anime-detail"
    EPISODE_DETAIL = "episode-detail"
    SEARCH = "search"


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What the gateway knows about one public endpoint, independent of any category."""

    key: EndpointKey
    path: str
    """Path template as written in configs, e.g. ``/api/v1/jadwal-rilis/{day}``."""
    default_ttl_seconds: int
    required_params: tuple[str, ...] = ()
    summary: str = ""


# Day names accepted by /jadwal-rilis/{day}: the Indonesian names the scraped sites use, plus
# English ones, compared case-insensitively.
DAY_NAMES: frozenset[str] = frozenset(
    {
        "senin", "selasa", "rabu", "kamis", "jumat", "sabtu", "minggu",
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    }
)  # fmt: skip

ENDPOINTS: tuple[EndpointSpec, ...] = (
    EndpointSpec(EndpointKey.HOME, f"{API_PREFIX}/home", 900, summary="Home page sections"),
    EndpointSpec(
        EndpointKey.JADWAL_RILIS, f"{API_PREFIX}/jadwal-rilis", 1800, summary="Weekly schedule"
    ),
    EndpointSpec(
        EndpointKey.JADWAL_RILIS_DAY,
        f"{API_PREFIX}/jadwal-rilis/{{day}}",
        1800,
        summary="Schedule of one day",
    ),
    EndpointSpec(
        EndpointKey.ANIME_TERBARU, f"{API_PREFIX}/anime-terbaru", 600, summary="Latest episodes"
    ),
    EndpointSpec(EndpointKey.MOVIE, f"{API_PREFIX}/movie", 1800, summary="Movies"),
    EndpointSpec(
        EndpointKey.ANIME_DETAIL,
        f"{API_PREFIX}/anime-detail",
        3600,
        required_params=("slug",),
        summary="One title with its episode list",
    ),
    EndpointSpec(
        EndpointKey.EPISODE_DETAIL,
        f"{API_PREFIX}/episode-detail",
        3600,
        required_params=("slug",),
        summary="One episode with streaming servers",
    ),
    EndpointSpec(
        EndpointKey.SEARCH,
        f"{API_PREFIX}/search",
        600,
        required_params=("q",),
        summary="Search titles",
    ),
)

ENDPOINTS_BY_PATH: dict[str, EndpointSpec] = {spec.path: spec for spec in ENDPOINTS}
ENDPOINTS_BY_KEY: dict[EndpointKey, EndpointSpec] = {spec.key: spec for spec in ENDPOINTS}
