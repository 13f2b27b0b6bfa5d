"""Models of the upstream answers, one per public endpoint (PRD Appendix A).

The required-field decisions are documented in :mod:`schemas.payloads.models`; how the models
report problems in :mod:`schemas.payloads.base`. The gateway does not build these models into its
responses — it validates the upstream body with them and passes the body through untouched.
"""

from __future__ import annotations

from pydantic import BaseModel

from schemas.endpoints import EndpointKey
from schemas.payloads.base import Rule
from schemas.payloads.models import (
    AnimeDetailPayload,
    AnimeTerbaruPayload,
    EpisodeDetailPayload,
    HomePayload,
    JadwalRilisDayPayload,
    JadwalRilisPayload,
    MoviePayload,
    SearchPayload,
)

PAYLOAD_MODELS: dict[EndpointKey, type[BaseModel]] = {
    EndpointKey.HOME: HomePayload,
    EndpointKey.JADWAL_RILIS: JadwalRilisPayload,
    EndpointKey.JADWAL_RILIS_DAY: JadwalRilisDayPayload,
    EndpointKey.ANIME_TERBARU: AnimeTerbaruPayload,
    EndpointKey.MOVIE: MoviePayload,
    EndpointKey.ANIME_DETAIL: AnimeDetailPayload,
    EndpointKey.EPISODE_DETAIL: EpisodeDetailPayload,
    EndpointKey.SEARCH: SearchPayload,
}
"""The model that validates each endpoint's upstream answer."""

__all__ = [
    "PAYLOAD_MODELS",
    "AnimeDetailPayload",
    "AnimeTerbaruPayload",
    "EpisodeDetailPayload",
    "HomePayload",
    "JadwalRilisDayPayload",
    "JadwalRilisPayload",
    "MoviePayload",
    "Rule",
    "SearchPayload",
]
