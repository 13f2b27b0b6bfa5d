"""One pydantic model per endpoint of PRD Appendix A, with the required-field decisions.

Every answer: ``confidence_score`` required, a number (not a bool) in [0, 1]; ``message`` and
``source`` optional strings. The threshold itself is applied by :mod:`schemas.validation`.

Anime-like items (home sections, schedules, lists, recommendations, search results and the
anime-detail object itself) need the PRD's universal fields: ``url``, ``judul`` or ``title``,
``anime_slug`` or ``slug``, ``cover`` or ``cover_url``. For an either/or pair one usable value is
enough. Per endpoint:

- home: at least one of ``top10``/``new_eps``/``movies``/``jadwal_rilis`` has an item; each present
  section is a list (``jadwal_rilis``: day -> list) of anime-like items; sections may be empty/null.
- jadwal-rilis: ``data`` is day -> list, with at least one item in some day (empty days are fine).
- jadwal-rilis-day, anime-terbaru, movie: ``data`` is a non-empty list of anime-like items.
- anime-detail: the universal fields at top level. ``episode_list`` and ``recommendations`` are
  optional and may be empty (an announced title has no episodes yet); when present, each episode
  needs ``url`` and ``title`` or ``episode``, each recommendation is an anime-like item.
- episode-detail: ``title`` and a non-empty ``streaming_servers`` whose every ``streaming_url`` is a
  URL (the PRD's streaming_url rule). ``other_episodes`` items, when present, need ``url`` and
  ``title`` or ``episode``. Navigation links, download links, thumbnails and ``anime_info`` are
  optional: scrapers legitimately emit null, "" or "#" for a missing next episode.
- search: ``data`` is a list of anime-like items and may be empty (no hits is a valid answer).

Everything else Appendix A lists (rating, score, genres, episode, rilis, release_time, sinopsis,
details, ...) is optional but typed: absent or null is fine, any other value must have the
Appendix A type. Placeholder and URL rules never apply to optional fields, so "TBA" release times
and "?" scores pass.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from schemas.payloads.base import (
    AnyHasItems,
    OneOf,
    PayloadModel,
    RequiredText,
    RequiredUrl,
    Rule,
    image_url_problem,
    text_problem,
)

OptionalText = str | None
OptionalTexts = list[str] | None


class Envelope(PayloadModel):
    """Fields every upstream answer carries."""

    confidence_score: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    message: OptionalText = None
    source: OptionalText = None


class AnimeItem(PayloadModel):
    """An anime-like entry with the PRD's universal required fields."""

    group_rules = (
        OneOf(("judul", "title"), text_problem),
        OneOf(("anime_slug", "slug"), text_problem),
        OneOf(("cover", "cover_url"), image_url_problem),
    )

    url: RequiredUrl
    judul: OptionalText = None
    title: OptionalText = None
    anime_slug: OptionalText = None
    slug: OptionalText = None
    cover: OptionalText = None
    cover_url: OptionalText = None


class TopAnime(AnimeItem):
    """An entry of the home page's top 10."""

    rating: OptionalText = None
    genres: OptionalTexts = None


class NewEpisode(AnimeItem):
    """A newly released episode on the home page."""

    episode: OptionalText = None
    rilis: OptionalText = None


class HomeMovie(AnimeItem):
    """A movie on the home page."""

    tanggal: OptionalText = None
    genres: OptionalTexts = None


class ScheduleEntry(AnimeItem):
    """A title in the weekly release schedule."""

    type: OptionalText = None
    score: OptionalText = None
    genres: OptionalTexts = None
    release_time: OptionalText = None


class LatestEpisode(AnimeItem):
    """An entry of the latest-episodes list."""

    episode: OptionalText = None
    uploader: OptionalText = None
    rilis: OptionalText = None


class Movie(AnimeItem):
    """An entry of the movie list."""

    status: OptionalText = None
    skor: OptionalText = None
    sinopsis: OptionalText = None
    views: OptionalText = None
    genres: OptionalTexts = None
    tanggal: OptionalText = None


class SearchResult(AnimeItem):
    """A search hit."""

    status: OptionalText = None
    tipe: OptionalText = None
    skor: OptionalText = None
    penonton: OptionalText = None
    sinopsis: OptionalText = None
    genre: OptionalTexts = None


class Recommendation(AnimeItem):
    """A related title on an anime-detail page."""

    rating: OptionalText = None
    episode: OptionalText = None


class EpisodeRef(PayloadModel):
    """A link to one episode: usable only with a URL and something to show as its name."""

    group_rules = (OneOf(("title", "episode"), text_problem),)

    url: RequiredUrl
    title: OptionalText = None
    episode: OptionalText = None
    episode_slug: OptionalText = None
    release_date: OptionalText = None


class OtherEpisode(EpisodeRef):
    """A sibling episode listed on an episode-detail page."""

    thumbnail_url: OptionalText = None


class AnimeRating(PayloadModel):
    """The rating block of an anime-detail page."""

    score: OptionalText = None
    users: OptionalText = None


class StreamingServer(PayloadModel):
    """One place the episode can be watched."""

    server_name: OptionalText = None
    streaming_url: RequiredUrl


class DownloadLink(PayloadModel):
    """One download mirror for a format and quality."""

    provider: OptionalText = None
    url: OptionalText = None


class EpisodeNavigation(PayloadModel):
    """Links to neighbouring episodes; the first and last episode have null neighbours."""

    previous_episode_url: OptionalText = None
    all_episodes_url: OptionalText = None
    next_episode_url: OptionalText = None


class EpisodeAnimeInfo(PayloadModel):
    """The title an episode belongs to."""

    title: OptionalText = None
    thumbnail_url: OptionalText = None
    synopsis: OptionalText = None
    genres: OptionalTexts = None


def _require_some_entry(days: dict[str, list[ScheduleEntry]]) -> dict[str, list[ScheduleEntry]]:
    if not any(days.values()):
        raise PydanticCustomError(Rule.EMPTY.value, "no day has any entry")
    return days


Schedule = dict[str, list[ScheduleEntry]]
"""Day name as the site writes it ("Senin", "Monday", "Random"...) -> entries of that day."""

NonEmptySchedule = Annotated[
    Schedule, AfterValidator(_require_some_entry), Field(json_schema_extra={"minProperties": 1})
]


class HomePayload(Envelope):
    """``GET /api/v1/home``: home page sections."""

    group_rules = (AnyHasItems(("top10", "new_eps", "movies", "jadwal_rilis")),)

    top10: list[TopAnime] | None = None
    new_eps: list[NewEpisode] | None = None
    movies: list[HomeMovie] | None = None
    jadwal_rilis: Schedule | None = None


class JadwalRilisPayload(Envelope):
    """``GET /api/v1/jadwal-rilis``: the weekly release schedule."""

    data: NonEmptySchedule


class JadwalRilisDayPayload(Envelope):
    """``GET /api/v1/jadwal-rilis/{day}``: the release schedule of one day."""

    data: Annotated[list[ScheduleEntry], Field(min_length=1)]


class AnimeTerbaruPayload(Envelope):
    """``GET /api/v1/anime-terbaru``: latest episodes."""

    data: Annotated[list[LatestEpisode], Field(min_length=1)]


class MoviePayload(Envelope):
    """``GET /api/v1/movie``: movies."""

    data: Annotated[list[Movie], Field(min_length=1)]


class AnimeDetailPayload(Envelope, AnimeItem):
    """``GET /api/v1/anime-detail``: one title with its episodes."""

    episode_list: list[EpisodeRef] | None = None
    recommendations: list[Recommendation] | None = None
    status: OptionalText = None
    tipe: OptionalText = None
    skor: OptionalText = None
    penonton: OptionalText = None
    sinopsis: OptionalText = None
    genre: OptionalTexts = None
    details: dict[str, OptionalText] | None = None
    rating: AnimeRating | None = None


class EpisodeDetailPayload(Envelope):
    """``GET /api/v1/episode-detail``: one episode with its streaming servers."""

    title: RequiredText
    thumbnail_url: OptionalText = None
    streaming_servers: Annotated[list[StreamingServer], Field(min_length=1)]
    release_info: OptionalText = None
    download_links: dict[str, dict[str, list[DownloadLink]]] | None = None
    navigation: EpisodeNavigation | None = None
    anime_info: EpisodeAnimeInfo | None = None
    other_episodes: list[OtherEpisode] | None = None


class SearchPayload(Envelope):
    """``GET /api/v1/search``: search hits; an empty list is a valid answer."""

    data: list[SearchResult]
