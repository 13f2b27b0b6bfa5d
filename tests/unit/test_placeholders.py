"""The detectors must catch what broken scrapers emit and leave real catalogue data alone."""

from __future__ import annotations

import pytest

from schemas.placeholders import (
    TextDefect,
    UrlDefect,
    is_blank,
    is_error_text,
    is_placeholder_image_url,
    is_placeholder_text,
    is_placeholder_url,
    is_well_formed_url,
    text_defect,
    url_defect,
)

REAL_TITLES = [
    "One Piece",
    "86",
    "22/7",
    "Re:Zero kara Hajimeru Isekai Seikatsu",
    "Dr. Stone",
    "Nana",
    "No Game No Life",
    "Trial and Error",
    "Error Code Zero",
    "Zankyou no Terror: Terror in Resonance",
    "Just a Moment of Love",
    "Mob Psycho 100",
    "TBA",
    "TBD",
    "葬送のフリーレン",
    "dandadan-s2-sub-indo",
]


@pytest.mark.parametrize("value", ["", "   ", "\t\n", "\xa0", "\u200b\u200b", " \ufeff "])
def test_invisible_only_values_are_blank(value: str) -> None:
    assert is_blank(value)


@pytest.mark.parametrize(
    "value",
    [
        "null",
        "None",
        "NULL",
        "undefined",
        "NaN",
        "N/A",
        "n/a",
        "NA",
        "-",
        " -- ",
        "\u2014",
        "?",
        "???",
        "...",
        "[object Object]",
        "{{ title }}",
        "${judul}",
        "%TITLE%",
    ],
)
def test_no_value_tokens_are_placeholders(value: str) -> None:
    assert is_placeholder_text(value)


@pytest.mark.parametrize("value", REAL_TITLES)
def test_real_titles_are_not_placeholders(value: str) -> None:
    assert not is_placeholder_text(value)


@pytest.mark.parametrize(
    "value",
    [
        "error",
        "Error 404",
        "ERROR: upstream timed out",
        "error - blocked",
        "404 Not Found",
        "HTTP 403 Forbidden",
        "Not Found",
        "Page not found",
        "Internal Server Error",
        "503 Service Unavailable",
        "Access Denied",
        "Access denied | otakudesu.cloud used Cloudflare to restrict access",
        "Just a moment...",
        "Just a moment\u2026",
        "Attention Required! | Cloudflare",
        "Checking your browser before accessing otakudesu.cloud",
        "Something went wrong.",
        "Traceback (most recent call last):\n  File 'scraper.py', line 3",
        "TypeError: Cannot read properties of undefined (reading 'title')",
        "java.lang.NullPointerException: title",
        "<!DOCTYPE html><html><head><title>502</title></head></html>",
        "Lorem ipsum dolor sit amet",
        "Please enable JavaScript and cookies to continue",
    ],
)
def test_error_page_texts_are_detected(value: str) -> None:
    assert is_error_text(value)


@pytest.mark.parametrize("value", REAL_TITLES)
def test_real_titles_are_not_error_texts(value: str) -> None:
    assert not is_error_text(value)


def test_text_defect_reports_blank_before_placeholder_before_error_text() -> None:
    assert text_defect(" \u200b ") is TextDefect.EMPTY
    assert text_defect("N/A") is TextDefect.PLACEHOLDER
    assert text_defect("Error 404") is TextDefect.ERROR_TEXT
    assert text_defect("Sousou no Frieren") is None


def test_text_defect_can_skip_the_error_text_check() -> None:
    assert text_defect("Error 404", error_text=False) is None


@pytest.mark.parametrize(
    "value",
    [
        "https://otakudesu.cloud/anime/dandadan-sub-indo/",
        "http://example.com",
        "https://cdn.example.com:8443/a.jpg?w=300#top",
        "HTTPS://Example.COM/Path",
        "https://user@example.com/x",
        "http://[::1]:8080/x",
        "https://example.com/anime/kimetsu%20no%20yaiba",
    ],
)
def test_absolute_http_urls_are_well_formed(value: str) -> None:
    assert is_well_formed_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "/anime/dandadan/",
        "example.com/anime",
        "//cdn.example.com/cover.jpg",
        "ftp://example.com/file",
        "javascript:void(0)",
        "https://",
        "https:///path-only",
        "https://...",
        "https://exa mple.com/",
        " https://example.com/",
        "https://example.com/a b",
        "https://example.com/\n",
        "https://example.com/\x00",
        "https://example.com:99999/",
        "https://example.com:http/",
        "http://[::1/x",
    ],
)
def test_relative_foreign_or_broken_urls_are_not_well_formed(value: str) -> None:
    assert not is_well_formed_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://otakudesu.cloud/anime/undefined/",
        "https://otakudesu.cloud/anime/null",
        "https://otakudesu.cloud/anime/None/",
        "https://otakudesu.cloud/episode/[object%20Object]",
    ],
)
def test_urls_built_from_missing_values_are_placeholders(value: str) -> None:
    assert is_placeholder_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://otakudesu.cloud/anime/nana-sub-indo/",
        "https://otakudesu.cloud/anime/nullpo/",
        "https://otakudesu.cloud/genre/none-of-us/",
        "https://otakudesu.cloud/search?q=undefined",
    ],
)
def test_urls_merely_containing_placeholder_words_are_fine(value: str) -> None:
    assert not is_placeholder_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",
        "DATA:image/png;base64,iVBORw0KGgo=",
        "https://via.placeholder.com/300x400",
        "https://placehold.co/600x400?text=No+Image",
        "https://i.dummyimage.com/300x400/000/fff",
        "https://otakudesu.cloud/wp-content/themes/x/images/no-image.png",
        "https://otakudesu.cloud/img/noimage.jpg",
        "https://otakudesu.cloud/img/No_Image.JPG",
        "https://site.example/wp-content/plugins/a3-lazy-load/assets/images/lazy_placeholder.gif",
        "https://site.example/assets/default-thumbnail.jpg",
        "https://site.example/static/blank.gif",
        "https://site.example/static/Blank.PNG",
    ],
)
def test_placeholder_images_are_detected(value: str) -> None:
    assert is_placeholder_image_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://cdn.myanimelist.net/images/anime/1223/96541.jpg",
        "https://otakudesu.cloud/wp-content/uploads/2024/10/Dandadan.jpg",
        "https://i.ytimg.com/vi/abc123/default.jpg",
        "https://otakudesu.cloud/wp-content/uploads/kimi-no-imagine.jpg",
        "https://placeholder.com.mirror.example/cover.jpg",
    ],
)
def test_real_cover_images_are_not_placeholders(value: str) -> None:
    assert not is_placeholder_image_url(value)


def test_url_defect_calls_a_data_uri_a_placeholder_image_only_for_image_fields() -> None:
    data_uri = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    assert url_defect(data_uri, image=True) is UrlDefect.PLACEHOLDER_IMAGE
    assert url_defect(data_uri) is UrlDefect.MALFORMED


def test_url_defect_ignores_image_markers_on_page_urls() -> None:
    assert url_defect("https://site.example/anime/no-image-no-life/") is None
    assert url_defect("https://site.example/anime/no-image-no-life/", image=True) is (
        UrlDefect.PLACEHOLDER_IMAGE
    )


def test_url_defect_reports_placeholder_path_segments() -> None:
    assert url_defect("https://site.example/anime/undefined/") is UrlDefect.PLACEHOLDER_PATH
