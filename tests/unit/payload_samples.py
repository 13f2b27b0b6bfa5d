"""Realistic valid upstream answers for every endpoint, shaped like PRD Appendix A.

Each builder returns a fresh dict, so a test may break one field without affecting others. Import
:data:`VALID_SAMPLES` for "one per endpoint" loops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.endpoints import EndpointKey

JsonObject = dict[str, Any]

SITE = "https://otakudesu.cloud"
CDN = "https://otakudesu.cloud/wp-content/uploads/2024/10"


def _envelope(confidence: float = 0.92) -> JsonObject:
    return {"confidence_score": confidence, "message": "success", "source": "otakudesu_v3"}


def top_anime(n: int = 1) -> JsonObject:
    """A top-10 entry of the home page (``judul``/``anime_slug``/``cover`` spelling)."""
    return {
        "judul": f"Dandadan Season {n}",
        "url": f"{SITE}/anime/dandadan-s{n}-sub-indo/",
        "anime_slug": f"dandadan-s{n}-sub-indo",
        "rating": "8.61",
        "cover": f"{CDN}/Dandadan-S{n}.jpg",
        "genres": ["Action", "Comedy", "Supernatural"],
    }


def new_episode(n: int = 1) -> JsonObject:
    """A new-episode entry of the home page."""
    return {
        "judul": "One Piece",
        "url": f"{SITE}/episode/wpoiec-episode-{1120 + n}-sub-indo/",
        "anime_slug": "one-piece-sub-indo",
        "episode": f"Episode {1120 + n}",
        "rilis": "2 jam yang lalu",
        "cover": f"{CDN}/One-Piece.jpg",
    }


def home_movie(n: int = 1) -> JsonObject:
    """A movie entry of the home page."""
    return {
        "judul": f"Kimi no Na wa {n}",
        "url": f"{SITE}/anime/kimi-no-na-wa-{n}-sub-indo/",
        "anime_slug": f"kimi-no-na-wa-{n}-sub-indo",
        "tanggal": "26 Agustus 2016",
        "cover": f"{CDN}/Kimi-no-Na-wa.jpg",
        "genres": ["Drama", "Romance"],
    }


def schedule_entry(n: int = 1) -> JsonObject:
    """A release-schedule entry (``title``/``cover_url`` spelling, as Appendix A writes it)."""
    return {
        "title": f"Ao no Hako {n}",
        "url": f"https://samehadaku.email/anime/ao-no-hako-{n}/",
        "anime_slug": f"ao-no-hako-{n}",
        "cover_url": f"https://samehadaku.email/wp-content/uploads/2024/10/Ao-no-Hako-{n}.jpg",
        "type": "TV",
        "score": "8.12",
        "genres": ["Romance", "Sports"],
        "release_time": "00:30",
    }


def home_payload(items_per_section: int = 10) -> JsonObject:
    """``/home``: four sections; 10 items each by default (about 60 items with the schedule)."""
    days = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")
    per_day = max(1, (2 * items_per_section) // len(days))
    return {
        **_envelope(),
        "top10": [top_anime(i) for i in range(items_per_section)],
        "new_eps": [new_episode(i) for i in range(items_per_section)],
        "movies": [home_movie(i) for i in range(items_per_section)],
        "jadwal_rilis": {day: [schedule_entry(i) for i in range(per_day)] for day in days},
    }


def jadwal_rilis_payload() -> JsonObject:
    """``/jadwal-rilis``: the weekly schedule; a day without releases is an empty list."""
    return {
        **_envelope(),
        "data": {
            "Senin": [schedule_entry(1), schedule_entry(2)],
            "Selasa": [schedule_entry(3)],
            "Random": [],
        },
    }


def jadwal_rilis_day_payload() -> JsonObject:
    """``/jadwal-rilis/senin``."""
    return {**_envelope(), "data": [schedule_entry(1), schedule_entry(2)]}


def latest_episode(n: int = 1) -> JsonObject:
    """An ``/anime-terbaru`` entry."""
    return {
        "judul": "Boku no Hero Academia Season 7",
        "url": f"https://samehadaku.email/boku-no-hero-academia-season-7-episode-{n}/",
        "anime_slug": "boku-no-hero-academia-season-7",
        "episode": str(n),
        "uploader": "Urusai",
        "rilis": "3 hours ago",
        "cover": "https://samehadaku.email/wp-content/uploads/2024/05/BNHA-S7.jpg",
    }


def anime_terbaru_payload() -> JsonObject:
    """``/anime-terbaru``."""
    return {**_envelope(), "data": [latest_episode(i) for i in range(1, 4)]}


def movie(n: int = 1) -> JsonObject:
    """A ``/movie`` entry."""
    return {
        "judul": f"Suzume no Tojimari {n}",
        "url": f"{SITE}/anime/suzume-no-tojimari-{n}-sub-indo/",
        "anime_slug": f"suzume-no-tojimari-{n}-sub-indo",
        "status": "Completed",
        "skor": "8.41",
        "sinopsis": "Suzume, 17, menemukan sebuah pintu misterius di reruntuhan.",
        "views": "120.5K",
        "cover": f"{CDN}/Suzume.jpg",
        "genres": ["Adventure", "Fantasy"],
        "tanggal": "11 November 2022",
    }


def movie_payload() -> JsonObject:
    """``/movie``."""
    return {**_envelope(), "data": [movie(1), movie(2)]}


def episode_ref(n: int = 1) -> JsonObject:
    """An ``episode_list`` entry of ``/anime-detail``."""
    return {
        "episode": str(n),
        "title": f"Frieren Episode {n} Subtitle Indonesia",
        "url": f"{SITE}/episode/snk-episode-{n}-sub-indo/",
        "episode_slug": f"snk-episode-{n}-sub-indo",
        "release_date": "29 Sep 2023",
    }


def anime_detail_payload() -> JsonObject:
    """``/anime-detail?slug=sousou-no-frieren``."""
    return {
        **_envelope(),
        "judul": "Sousou no Frieren",
        "url": f"{SITE}/anime/sousou-frieren-sub-indo/",
        "anime_slug": "sousou-frieren-sub-indo",
        "cover": f"{CDN}/Frieren.jpg",
        "episode_list": [episode_ref(i) for i in range(1, 4)],
        "recommendations": [
            {
                "title": "Kusuriya no Hitorigoto",
                "url": f"{SITE}/anime/kusuriya-hitorigoto-sub-indo/",
                "anime_slug": "kusuriya-hitorigoto-sub-indo",
                "cover_url": f"{CDN}/Kusuriya.jpg",
                "rating": "8.87",
                "episode": "24 Eps",
            }
        ],
        "status": "Completed",
        "tipe": "TV",
        "skor": "9.30",
        "penonton": "1.2M",
        "sinopsis": "Setelah mengalahkan Raja Iblis, sang elf penyihir Frieren...",
        "genre": ["Adventure", "Drama", "Fantasy"],
        "details": {
            "Japanese": "葬送のフリーレン",
            "Synonyms": "Frieren at the Funeral",
            "English": "Frieren: Beyond Journey's End",
            "Status": "Finished Airing",
            "Type": "TV",
            "Source": "Manga",
            "Duration": "24 min. per ep.",
            "Total Episode": "28",
            "Studio": "Madhouse",
            "Producers": "Aniplex, Dentsu",
            "Released:": "Sep 29, 2023",
        },
        "rating": {"score": "9.30", "users": "512,331"},
    }


def episode_detail_payload() -> JsonObject:
    """``/episode-detail?slug=snk-episode-2-sub-indo``; episode 2, so both neighbours exist."""
    return {
        **_envelope(),
        "title": "Sousou no Frieren Episode 2 Subtitle Indonesia",
        "thumbnail_url": f"{CDN}/Frieren-Episode-2.jpg",
        "streaming_servers": [
            {
                "server_name": "ondesu 480p",
                "streaming_url": "https://desustream.info/dstream/ondesu/v5/index.php?id=abc",
            },
            {"server_name": "pdrain 720p", "streaming_url": "https://pixeldrain.com/u/Xy12ab34"},
        ],
        "release_info": "Rilis: 6 Oktober 2023",
        "download_links": {
            "MP4": {
                "480p": [{"provider": "Pdrain", "url": "https://pixeldrain.com/u/Ab12Cd34"}],
                "720p": [{"provider": "Mega", "url": "https://mega.nz/file/AbCdEf#key"}],
            },
            "MKV": {"1080p": [{"provider": "GoFile", "url": "https://gofile.io/d/ZyXw98"}]},
        },
        "navigation": {
            "previous_episode_url": f"{SITE}/episode/snk-episode-1-sub-indo/",
            "all_episodes_url": f"{SITE}/anime/sousou-frieren-sub-indo/",
            "next_episode_url": f"{SITE}/episode/snk-episode-3-sub-indo/",
        },
        "anime_info": {
            "title": "Sousou no Frieren",
            "thumbnail_url": f"{CDN}/Frieren.jpg",
            "synopsis": "Setelah mengalahkan Raja Iblis...",
            "genres": ["Adventure", "Drama"],
        },
        "other_episodes": [
            {
                "title": "Sousou no Frieren Episode 1",
                "url": f"{SITE}/episode/snk-episode-1-sub-indo/",
                "thumbnail_url": f"{CDN}/Frieren-Episode-1.jpg",
                "release_date": "29 Sep 2023",
            }
        ],
    }


def search_result(n: int = 1) -> JsonObject:
    """A ``/search`` hit."""
    return {
        "judul": f"Naruto Shippuden {n}",
        "url": f"{SITE}/anime/naruto-shippuden-{n}-sub-indo/",
        "anime_slug": f"naruto-shippuden-{n}-sub-indo",
        "status": "Completed",
        "tipe": "TV",
        "skor": "8.26",
        "penonton": "2.1M",
        "sinopsis": "Naruto kembali ke Konoha setelah dua setengah tahun berlatih.",
        "genre": ["Action", "Adventure"],
        "cover": f"{CDN}/Naruto-Shippuden.jpg",
    }


def search_payload() -> JsonObject:
    """``/search?q=naruto``."""
    return {**_envelope(), "data": [search_result(1), search_result(2)]}


VALID_SAMPLES: dict[EndpointKey, Callable[[], JsonObject]] = {
    EndpointKey.HOME: home_payload,
    EndpointKey.JADWAL_RILIS: jadwal_rilis_payload,
    EndpointKey.JADWAL_RILIS_DAY: jadwal_rilis_day_payload,
    EndpointKey.ANIME_TERBARU: anime_terbaru_payload,
    EndpointKey.MOVIE: movie_payload,
    EndpointKey.ANIME_DETAIL: anime_detail_payload,
    EndpointKey.EPISODE_DETAIL: episode_detail_payload,
    EndpointKey.SEARCH: search_payload,
}
"""A builder of a valid answer for each endpoint."""
