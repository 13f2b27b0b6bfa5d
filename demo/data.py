"""Deterministic, Appendix-A-shaped payloads of the fake upstreams for all eight endpoints."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

from schemas.endpoints import ENDPOINTS_BY_KEY, EndpointKey

ANIME_TITLES: tuple[str, ...] = (
    "One Piece", "Jujutsu Kaisen", "Kimetsu no Yaiba", "Shingeki no Kyojin",
    "Boku no Hero Academia", "Spy x Family", "Chainsaw Man", "Blue Lock", "Kaijuu 8-gou",
    "Sousou no Frieren", "Dandadan", "Ore dake Level Up na Ken", "Oshi no Ko", "Mashle",
    "Dr. Stone", "Tensei shitara Slime Datta Ken", "Re:Zero kara Hajimeru Isekai Seikatsu",
    "Mushoku Tensei", "Kusuriya no Hitorigoto", "Dungeon Meshi", "Bleach: Sennen Kessen-hen",
    "Boruto: Naruto Next Generations", "Naruto Shippuden", "Haikyuu!!", "Tokyo Revengers",
    "Black Clover", "Vinland Saga", "Kingdom", "Wind Breaker", "Hunter x Hunter",
    "Kage no Jitsuryokusha ni Naritakute!", "Kaguya-sama wa Kokurasetai", "Bocchi the Rock!",
    "Yofukashi no Uta", "Ao no Exorcist", "Enen no Shouboutai",
)  # fmt: skip
ANIME_MOVIES: tuple[str, ...] = (
    "Kimi no Na wa.", "Suzume no Tojimari", "Tenki no Ko", "Jujutsu Kaisen 0 Movie",
    "Koe no Katachi", "Sen to Chihiro no Kamikakushi", "The First Slam Dunk",
    "One Piece Film: Red", "Kimetsu no Yaiba Movie: Mugen Ressha-hen",
    "Haikyuu!! Movie: Gomisuteba no Kessen",
)  # fmt: skip
DRAMA_TITLES: tuple[str, ...] = (
    "Queen of Tears", "Lovely Runner", "Moving", "Crash Landing on You", "Goblin",
    "Descendants of the Sun", "Extraordinary Attorney Woo", "The Glory", "Business Proposal",
    "Reply 1988", "Hospital Playlist", "Vincenzo", "Itaewon Class", "Squid Game",
    "Twenty-Five Twenty-One", "My Demon", "Marry My Husband", "Hometown Cha-Cha-Cha",
    "Alchemy of Souls", "King the Land", "Start-Up", "Mr. Sunshine",
)  # fmt: skip
DRAMA_MOVIES: tuple[str, ...] = (
    "Parasite", "Train to Busan", "Exhuma", "Decision to Leave", "The Roundup",
    "Miracle in Cell No. 7", "Concrete Utopia", "12.12: The Day",
)  # fmt: skip
ANIME_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Comedy", "Drama", "Fantasy", "Romance", "Slice of Life", "Shounen",
    "Seinen", "Supernatural", "Isekai", "Mystery", "School", "Sci-Fi", "Sports", "Music",
)  # fmt: skip
DRAMA_GENRES: tuple[str, ...] = (
    "Romance", "Comedy", "Drama", "Thriller", "Fantasy", "Melodrama", "Action", "Family",
    "Medical", "Legal", "Crime", "Historical",
)  # fmt: skip
DAYS_ID: tuple[str, ...] = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")
_DAYS_EN = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS_ID = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des")
_UPLOADERS = ("Admin", "Sokuja", "Nanime", "Oploverz", "Kusonime")
_HEROES = ("seorang pemuda", "sekelompok siswa", "seorang pendekar", "dua sahabat", "sang putri")
_GOALS = (
    "berjuang melindungi kotanya dari ancaman misterius", "bermimpi menjadi yang terkuat",
    "mencari kebenaran di balik hilangnya keluarganya", "menemukan arti persahabatan dan cinta",
    "terjebak di dunia lain dan harus bertahan hidup",
)  # fmt: skip
_SERVERS = ("Nakama 480p", "Pucuk 720p", "Vidhide 1080p")
_DOWNLOAD_FORMATS = {"MP4": ("360p", "480p", "720p"), "MKV": ("480p", "720p", "1080p")}
_PROVIDERS = ("Gofile", "Pixeldrain", "Mega")

Record = dict[str, object]


def slugify(text: str) -> str:
    """Lower-case ASCII slug as the scraped sites build them: ``Dr. Stone`` → ``dr-stone``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "judul"


def day_index(day: str) -> int:
    """Index 0 (Monday) .. 6 of an Indonesian or English day name, case-insensitive.

    Raises:
        ValueError: when ``day`` names no day.
    """
    lowered = day.strip().lower()
    for names in (tuple(name.lower() for name in DAYS_ID), _DAYS_EN):
        if lowered in names:
            return names.index(lowered)
    raise ValueError(f"unknown day {day!r}")


class _Site:
    """One source's look: host, title pools and a seeded random stream for one payload."""

    def __init__(self, source_name: str, seed: int, salt: str) -> None:
        self.drama = source_name.lower().startswith("drakor")
        self.titles = DRAMA_TITLES if self.drama else ANIME_TITLES
        self.movies = DRAMA_MOVIES if self.drama else ANIME_MOVIES
        self.genre_pool = DRAMA_GENRES if self.drama else ANIME_GENRES
        host = re.sub(r"[^a-z0-9-]+", "-", source_name.lower()).strip("-") or "source"
        self.base = f"https://{host}.example"
        # A str seed is hashed with SHA-512, so the stream is stable across processes.
        self.rng = random.Random(f"{seed}|{source_name}|{salt}")

    def page_url(self, slug: str) -> str:
        return f"{self.base}/{'drama' if self.drama else 'anime'}/{slug}/"

    def episode_url(self, slug: str, number: int) -> str:
        return f"{self.base}/{slug}-episode-{number}/"

    def cover(self, slug: str) -> str:
        return f"{self.base}/images/{slug}.jpg"

    def genres(self, count: int = 3) -> list[str]:
        return self.rng.sample(self.genre_pool, count)

    def score(self) -> str:
        return f"{self.rng.uniform(6.5, 9.3):.2f}"

    def date(self) -> str:
        day, month = self.rng.randint(1, 28), self.rng.choice(_MONTHS_ID)
        return f"{day} {month} {self.rng.randint(2021, 2024)}"

    def count(self) -> str:
        return f"{self.rng.randint(1_000, 950_000):,}".replace(",", ".")

    def synopsis(self, title: str) -> str:
        hero, goal = self.rng.choice(_HEROES), self.rng.choice(_GOALS)
        return f"{title} mengikuti kisah {hero} yang {goal}."

    def card(self, title: str, title_key: str = "judul", cover_key: str = "cover") -> Record:
        """The fields every listing shares: title, page URL, slug and cover."""
        slug = slugify(title)
        url = self.page_url(slug)
        return {title_key: title, "url": url, "anime_slug": slug, cover_key: self.cover(slug)}

    def envelope(self, source_name: str) -> Record:
        return {
            "confidence_score": round(self.rng.uniform(0.9, 1.0), 3),
            "message": "Data berhasil diambil",
            "source": source_name,
        }


def _title_for_slug(slug: str) -> str:
    for title in (*ANIME_TITLES, *DRAMA_TITLES, *ANIME_MOVIES, *DRAMA_MOVIES):
        if slugify(title) == slug:
            return title
    return slug.replace("-", " ").title()


def _episode_total(slug: str) -> int:
    # Keyed by slug alone so every source agrees on how long a show is.
    return random.Random(f"episodes|{slug}").randint(12, 28)


def _day_schedule(source_name: str, seed: int, index: int) -> list[Record]:
    site = _Site(source_name, seed, f"jadwal|{index}")
    return [
        site.card(title, "title", "cover_url")
        | {
            "type": "Drama" if site.drama else site.rng.choice(("TV", "ONA")),
            "score": site.score(),
            "genres": site.genres(),
            "release_time": f"{site.rng.randint(17, 23):02d}:{site.rng.choice((0, 30)):02d}",
        }
        for title in site.rng.sample(site.titles, site.rng.randint(3, 5))
    ]


def _week(source_name: str, seed: int) -> dict[str, list[Record]]:
    return {name: _day_schedule(source_name, seed, i) for i, name in enumerate(DAYS_ID)}


def _new_episode(site: _Site, title: str) -> Record:
    item = site.card(title)
    number = site.rng.randint(1, _episode_total(slugify(title)))
    item["url"] = site.episode_url(slugify(title), number)
    return item | {"episode": str(number), "rilis": f"{site.rng.randint(1, 23)} jam yang lalu"}


def _movie(site: _Site, title: str, full: bool) -> Record:
    item = site.card(title) | {"genres": site.genres(), "tanggal": site.date()}
    if full:
        item |= {"status": "Completed", "skor": site.score(), "views": site.count()}
        item["sinopsis"] = site.synopsis(title)
    return item


def _home(source_name: str, seed: int) -> Record:
    site = _Site(source_name, seed, "home")
    top10 = [
        site.card(title) | {"rating": site.score(), "genres": site.genres()}
        for title in site.rng.sample(site.titles, 10)
    ]
    new_eps = [_new_episode(site, title) for title in site.rng.sample(site.titles, 8)]
    movies = [_movie(site, title, full=False) for title in site.rng.sample(site.movies, 4)]
    return site.envelope(source_name) | {
        "top10": top10,
        "new_eps": new_eps,
        "movies": movies,
        "jadwal_rilis": _week(source_name, seed),
    }


def _anime_terbaru(source_name: str, seed: int) -> Record:
    site = _Site(source_name, seed, "terbaru")
    data = [
        _new_episode(site, title) | {"uploader": site.rng.choice(_UPLOADERS)}
        for title in site.rng.sample(site.titles, 12)
    ]
    return site.envelope(source_name) | {"data": data}


def _search_card(site: _Site, title: str) -> Record:
    return site.card(title) | {
        "status": site.rng.choice(("Ongoing", "Completed")),
        "tipe": "Drama" if site.drama else site.rng.choice(("TV", "Movie", "ONA")),
        "skor": site.score(),
        "penonton": site.count(),
        "sinopsis": site.synopsis(title),
        "genre": site.genres(),
    }


def _search(source_name: str, seed: int, query: str) -> Record:
    site = _Site(source_name, seed, f"search|{query}")
    needle = query.casefold()
    titles = [title for title in (*site.titles, *site.movies) if needle in title.casefold()]
    display = query.title() if query.title().casefold() == needle else query
    # Always answer with hits (scraped sites rarely say "nothing found"), each naming the query.
    for extra in (display, f"{display} Season 2", f"{display}: The Movie"):
        if len(titles) >= 3:
            break
        titles.append(extra)
    return site.envelope(source_name) | {"data": [_search_card(site, t) for t in titles[:10]]}


def _anime_detail(source_name: str, seed: int, slug: str) -> Record:
    site = _Site(source_name, seed, f"detail|{slug}")
    title, total = _title_for_slug(slug), _episode_total(slug)
    episodes = [
        {
            "episode": str(number),
            "title": f"{title} Episode {number}",
            "url": site.episode_url(slug, number),
            "episode_slug": f"{slug}-episode-{number}",
            "release_date": site.date(),
        }
        for number in range(total, 0, -1)
    ]
    others = [t for t in site.titles if slugify(t) != slug]
    recommendations = [
        site.card(other, "title", "cover_url")
        | {"rating": site.score(), "episode": f"Ep {_episode_total(slugify(other))}"}
        for other in site.rng.sample(others, 5)
    ]
    score, status = site.score(), site.rng.choice(("Ongoing", "Completed"))
    kind = "Drama" if site.drama else "TV"
    details = {
        "Japanese": title, "Synonyms": title, "English": title, "Status": status, "Type": kind,
        "Source": "Original" if site.drama else "Manga",
        "Duration": f"{site.rng.choice((23, 24, 60, 70))} min. per ep.",
        "Total Episode": str(total),
        "Studio": site.rng.choice(("MAPPA", "Ufotable", "Toei Animation", "Studio Dragon")),
        "Producers": "Aniplex, Shueisha", "Released:": site.date(),
    }  # fmt: skip
    return site.envelope(source_name) | {
        "judul": title,
        "url": site.page_url(slug),
        "anime_slug": slug,
        "cover": site.cover(slug),
        "episode_list": episodes,
        "recommendations": recommendations,
        "status": status,
        "tipe": kind,
        "skor": score,
        "penonton": site.count(),
        "sinopsis": site.synopsis(title),
        "genre": site.genres(),
        "details": details,
        "rating": {"score": score, "users": site.count()},
    }


def _episode_detail(source_name: str, seed: int, episode_slug: str) -> Record:
    site = _Site(source_name, seed, f"episode|{episode_slug}")
    match = re.fullmatch(r"(.+)-episode-(\d+)", episode_slug)
    slug, number = (match.group(1), int(match.group(2))) if match else (episode_slug, 1)
    title, total = _title_for_slug(slug), max(_episode_total(slug), number)
    servers = [
        {"server_name": name, "streaming_url": f"{site.base}/stream/{episode_slug}/{slugify(name)}"}
        for name in _SERVERS
    ]
    downloads = {
        fmt: {
            quality: [
                {"provider": p, "url": f"{site.base}/dl/{episode_slug}/{quality}/{p.lower()}"}
                for p in _PROVIDERS
            ]
            for quality in qualities
        }
        for fmt, qualities in _DOWNLOAD_FORMATS.items()
    }
    navigation = {
        "previous_episode_url": site.episode_url(slug, number - 1) if number > 1 else None,
        "all_episodes_url": site.page_url(slug),
        "next_episode_url": site.episode_url(slug, number + 1) if number < total else None,
    }
    nearby = [n for n in range(number - 2, number + 3) if 1 <= n <= total and n != number]
    return site.envelope(source_name) | {
        "title": f"{title} Episode {number} Subtitle Indonesia",
        "thumbnail_url": site.cover(slug),
        "streaming_servers": servers,
        "release_info": f"Dirilis {site.date()}",
        "download_links": downloads,
        "navigation": navigation,
        "anime_info": {
            "title": title,
            "thumbnail_url": site.cover(slug),
            "synopsis": site.synopsis(title),
            "genres": site.genres(),
        },
        "other_episodes": [
            {
                "title": f"{title} Episode {n}",
                "url": site.episode_url(slug, n),
                "thumbnail_url": site.cover(slug),
                "release_date": site.date(),
            }
            for n in nearby
        ],
    }


def used_params(endpoint: EndpointKey, params: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The parameters that shape ``endpoint``'s payload, as a hashable cache key part.

    Args:
        endpoint: which endpoint is asked for.
        params: the request's query parameters.

    Returns:
        ``(name, value)`` pairs of the endpoint's required parameters, in catalogue order.

    Raises:
        ValueError: naming the first required parameter that is missing or blank.
    """
    pairs = []
    for name in ENDPOINTS_BY_KEY[endpoint].required_params:
        value = params.get(name, "").strip()
        if not value:
            raise ValueError(f"missing query parameter {name!r}")
        pairs.append((name, value))
    return tuple(pairs)


def generate_payload(
    endpoint: EndpointKey,
    source_name: str,
    params: Mapping[str, str],
    day: str | None,
    seed: int,
) -> Record:
    """Build one fresh, valid upstream answer; same inputs always give the same output.

    Args:
        endpoint: which of the eight endpoints.
        source_name: the fake upstream; becomes ``source`` and the URL host
            (``https://<source>.example/...``). Names starting with ``drakor`` serve dramas.
        params: query parameters; ``slug`` for the detail endpoints, ``q`` for search.
        day: the day name for ``jadwal-rilis/{day}`` (Indonesian or English), else ignored.
        seed: varies the generated data.

    Returns:
        A new JSON-ready dict the caller may mutate.

    Raises:
        ValueError: when a required parameter or the day is missing or unknown.
    """
    values = dict(used_params(endpoint, params))
    match endpoint:
        case EndpointKey.HOME:
            return _home(source_name, seed)
        case EndpointKey.JADWAL_RILIS:
            site = _Site(source_name, seed, "jadwal")
            return site.envelope(source_name) | {"data": _week(source_name, seed)}
        case EndpointKey.JADWAL_RILIS_DAY:
            index = day_index(day or "")
            site = _Site(source_name, seed, f"jadwal-day|{index}")
            return site.envelope(source_name) | {"data": _day_schedule(source_name, seed, index)}
        case EndpointKey.ANIME_TERBARU:
            return _anime_terbaru(source_name, seed)
        case EndpointKey.MOVIE:
            site = _Site(source_name, seed, "movie")
            data = [_movie(site, title, full=True) for title in site.movies]
            return site.envelope(source_name) | {"data": data}
        case EndpointKey.ANIME_DETAIL:
            return _anime_detail(source_name, seed, values["slug"])
        case EndpointKey.EPISODE_DETAIL:
            return _episode_detail(source_name, seed, values["slug"])
        case EndpointKey.SEARCH:
            return _search(source_name, seed, values["q"])
