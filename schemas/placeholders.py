"""Pure detectors for values a scraper emits when it failed: placeholder tokens, error-page text,
malformed URLs and placeholder images.

Every function takes one string and answers a yes/no question; none raises, none does I/O, so they
are safe to call from any thread or event loop. They are tuned to reject broken scrapes without
rejecting real catalogue data: numeric titles ("86", "22/7") and titles that merely contain a word
like "Error" ("Trial and Error") pass, and "TBA"/"TBD" are not placeholders. The payload models
apply these detectors to required fields only, so a "?" release date (optional) stays valid.
"""

from __future__ import annotations

import enum
import re

# Zero-width characters survive str.strip() but render as nothing, so a title made only of them is
# as empty as "".
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"

PLACEHOLDER_TOKENS: frozenset[str] = frozenset(
    {
        "null", "none", "nil", "undefined", "nan", "[object object]",
        "n/a", "n.a.", "n.a", "na", "#",
        "-", "--", "---", "\u2013", "\u2014", "_",
        "?", "??", "???", "...", "\u2026",
    }
)  # fmt: skip
"""Case-folded values that stand for "no value" (compared after stripping whitespace)."""

# Unrendered template markers: "{{ title }}", "${judul}", "<%= cover %>", "%TITLE%".
_TEMPLATE_MARKER = re.compile(r"\{\{.*\}\}|\$\{.*\}|<%.*%>|%[a-z_]+%", re.DOTALL)

_HTTP_ERROR_REASONS = (
    r"not\s+found|forbidden|unauthori[sz]ed|bad\s+request|bad\s+gateway|internal\s+server\s+error"
    r"|service\s+(?:temporarily\s+)?unavailable|gateway\s+time-?out|too\s+many\s+requests"
    r"|request\s+time-?out"
)

# Whole-value shapes of error pages and stack traces, matched against the case-folded value.
# Anchored on purpose: "Trial and Error" or "Error Code: Zero"-like titles must not match.
_ERROR_SHAPES = re.compile(
    rf"""
    error                                            # "error"
    | error\s*\d{{3}}\b.*                            # "Error 404", "error 500 - upstream"
    | error\s*[:|\u2013\u2014-].*                    # "Error: timeout", "error - blocked"
    | (?:http\s*)?[45]\d\d\s*[:|\u2013\u2014-]?\s*(?:{_HTTP_ERROR_REASONS})\b.*   # "404 Not Found"
    | (?:page\s+)?(?:{_HTTP_ERROR_REASONS})[.!]*     # "Not Found", "Internal Server Error"
    | access\s+denied\b.*                            # Cloudflare / WAF block pages
    | just\s+a\s+moment(?:\.{{3}}|\u2026)?           # Cloudflare challenge page title
    | attention\s+required!?.*                       # Cloudflare block page title
    | checking\s+your\s+browser\b.*                  # DDoS-protection interstitials
    | (?:something\s+went\s+wrong|an\s+error\s+(?:has\s+)?occurred|unknown\s+error)[.!]*
    | traceback\s*\(most\s+recent\s+call\s+last\).*  # Python stack trace
    | (?:<!doctype|<html|<\?xml)\b.*                 # a whole HTML/XML page in a text field
    """,
    re.VERBOSE | re.DOTALL,
)

# "TypeError: Cannot read properties of undefined", "java.lang.NullPointerException: x".
# Case-sensitive so that words like "Terror:" in a real title do not match.
_EXCEPTION_PREFIX = re.compile(r"(?:[A-Za-z_$][\w$]*\.)*[A-Z]\w*(?:Error|Exception)\b\s*:")

# Filler and block-page phrases that disqualify a value wherever they appear in it.
_ERROR_FRAGMENT = re.compile(
    r"lorem ipsum|traceback \(most recent call last\)|cloudflare ray id"
    r"|enable javascript and cookies to continue"
)

# scheme://authority; the rest of the URL is split by hand, which measured over twice as fast as
# urlsplit() plus its lazily computed .hostname/.port on this hot path.
_HTTP_URL_HEAD = re.compile(r"(?i:https?)://([^/?#]*)")

PLACEHOLDER_IMAGE_HOSTS: frozenset[str] = frozenset(
    {
        "via.placeholder.com",
        "placeholder.com",
        "placehold.co",
        "placehold.it",
        "dummyimage.com",
        "fakeimg.pl",
        "placekitten.com",
        "placeimg.com",
        "lorempixel.com",
        "loremflickr.com",
        "picsum.photos",
    }
)
"""Image services that only serve generated stand-in images (subdomains included)."""

PLACEHOLDER_IMAGE_FILES: frozenset[str] = frozenset(
    {
        "blank.gif", "blank.png", "blank.jpg", "spacer.gif", "pixel.gif", "pixel.png",
        "1x1.gif", "1x1.png", "transparent.gif", "transparent.png", "grey.gif", "gray.gif",
        "lazy.gif", "lazy.png", "lazyload.gif", "lazyload.png", "loading.gif", "loader.gif",
    }
)  # fmt: skip
"""Lower-cased file names of lazy-load stand-ins; a real cover is never called ``blank.gif``."""

# What interpolating a missing value into a URL produces: ".../anime/undefined/".
_PLACEHOLDER_URL_SEGMENT = re.compile(
    r"/(?:undefined|null|none|nan|\[object%20object\])(?=/|$)", re.IGNORECASE
)
# Markers matched as whole tokens of the lower-cased path, so "no-image" matches
# "/img/no-image.png" but a longer word that merely contains the letters does not. A leading
# separator rather than a look-behind lets the regex engine skip ahead cheaply.
_PLACEHOLDER_IMAGE_MARKER = re.compile(
    r"[^a-z0-9](?:"
    r"placeholders?|no[-_]?images?|no[-_]?img|no[-_]?thumb(?:nail)?s?|no[-_]?cover|no[-_]?poster"
    r"|default[-_](?:thumbnail|thumb|image|img|cover|poster)"
    r"|image[-_]not[-_]found|img[-_]not[-_]found"
    r")(?![a-z0-9])"
)


class TextDefect(enum.StrEnum):
    """Why a text value cannot stand for real data."""

    EMPTY = "empty"
    PLACEHOLDER = "placeholder"
    ERROR_TEXT = "error_text"


class UrlDefect(enum.StrEnum):
    """Why a URL value cannot be handed to a client."""

    MALFORMED = "malformed"
    PLACEHOLDER_PATH = "placeholder_path"
    PLACEHOLDER_IMAGE = "placeholder_image"


def _core(value: str) -> str:
    core = value.strip()
    # Zero-width characters are rare, so only pay for the slow path when one sits at an edge.
    while core and (core[0] in _INVISIBLE or core[-1] in _INVISIBLE):
        core = core.strip(_INVISIBLE).strip()
    return core


def _is_placeholder_token(folded: str) -> bool:
    if folded in PLACEHOLDER_TOKENS:
        return True
    # Every template marker holds "{" or "%"; testing that first skips the regex for real titles.
    return ("{" in folded or "%" in folded) and _TEMPLATE_MARKER.fullmatch(folded) is not None


def _is_error_text(core: str, folded: str) -> bool:
    # The substring tests keep the backtracking-prone exception regex off ordinary titles.
    if ":" in core and ("Error" in core or "Exception" in core) and _EXCEPTION_PREFIX.match(core):
        return True
    return _ERROR_SHAPES.fullmatch(folded) is not None or _ERROR_FRAGMENT.search(folded) is not None


def text_defect(value: str, *, error_text: bool = True) -> TextDefect | None:
    """Find why a text value is not real data, in one pass (the validators' hot path).

    Args:
        value: Any string.
        error_text: Also look for error-page text; pointless for values that must be URLs.

    Returns:
        ``None`` for usable text; otherwise the first defect of blank, placeholder token
        (see :func:`is_placeholder_text`), error text (see :func:`is_error_text`).
    """
    core = _core(value)
    if not core:
        return TextDefect.EMPTY
    folded = core.casefold()
    if _is_placeholder_token(folded):
        return TextDefect.PLACEHOLDER
    if error_text and _is_error_text(core, folded):
        return TextDefect.ERROR_TEXT
    return None


def is_blank(value: str) -> bool:
    """Tell whether a string holds nothing visible.

    Args:
        value: Any string.

    Returns:
        True for "", whitespace (including non-breaking spaces) and zero-width characters only.
    """
    return not _core(value)


def is_placeholder_text(value: str) -> bool:
    """Tell whether a string is a stand-in for "no value" such as ``N/A``, ``null`` or ``-``.

    Args:
        value: Any string; compared case-insensitively after stripping whitespace.

    Returns:
        True for the tokens in :data:`PLACEHOLDER_TOKENS` and unrendered template markers.
    """
    return _is_placeholder_token(_core(value).casefold())


def is_error_text(value: str) -> bool:
    """Tell whether a string is the text of an error page, block page or stack trace.

    Args:
        value: Any string.

    Returns:
        True for values such as "Error 404", "Not Found", "Access Denied", "Just a moment...",
        "Internal Server Error", a Python traceback, a JavaScript ``TypeError: ...`` or lorem
        ipsum filler; False for real titles that merely contain such words.
    """
    core = _core(value)
    return _is_error_text(core, core.casefold())


def _split_http_url(value: str) -> tuple[str, str] | None:
    """Return (lower-cased host, path) of a usable absolute http(s) URL, else None."""
    # isprintable() is False for every whitespace and control character except " ".
    if " " in value or not value.isprintable():
        return None
    head = _HTTP_URL_HEAD.match(value)
    if head is None:
        return None
    host_port = head.group(1).rpartition("@")[2]
    if host_port.startswith("["):  # IPv6 literal: [::1]:8080
        host, closed, after = host_port[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            return None
        port = after[1:]
    else:
        host, _, port = host_port.partition(":")
        if "[" in host or "]" in host:
            return None
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return None
    if not host.strip("."):
        return None
    path = value[head.end() :].partition("?")[0].partition("#")[0]
    return host.lower(), path


def _is_placeholder_host(host: str) -> bool:
    host = host.rstrip(".")
    # Walk the parent domains, so "i.dummyimage.com" matches "dummyimage.com".
    while host:
        if host in PLACEHOLDER_IMAGE_HOSTS:
            return True
        host = host.partition(".")[2]
    return False


def _has_placeholder_segment(path: str) -> bool:
    return _PLACEHOLDER_URL_SEGMENT.search(path) is not None


def _is_placeholder_image_path(path: str) -> bool:
    folded = path.lower()
    if folded.rpartition("/")[2] in PLACEHOLDER_IMAGE_FILES:
        return True
    return _PLACEHOLDER_IMAGE_MARKER.search(folded) is not None


def _is_data_uri(value: str) -> bool:
    return _core(value)[:5].casefold() == "data:"


def url_defect(value: str, *, image: bool = False) -> UrlDefect | None:
    """Find why a URL cannot be handed to a client, parsing it once (the validators' hot path).

    Args:
        value: Any string.
        image: The URL must show a real picture (also rejects placeholder images).

    Returns:
        ``None`` for a usable URL; otherwise ``malformed`` (see :func:`is_well_formed_url`),
        ``placeholder_image`` (images only, see :func:`is_placeholder_image_url`; a ``data:``
        URI is reported as this rather than as malformed) or ``placeholder_path`` (see
        :func:`is_placeholder_url`).
    """
    # A data: URI is malformed for us too, but "placeholder image" is the more useful diagnosis.
    if image and _is_data_uri(value):
        return UrlDefect.PLACEHOLDER_IMAGE
    parts = _split_http_url(value)
    if parts is None:
        return UrlDefect.MALFORMED
    host, path = parts
    if image and (_is_placeholder_host(host) or _is_placeholder_image_path(path)):
        return UrlDefect.PLACEHOLDER_IMAGE
    if _has_placeholder_segment(path):
        return UrlDefect.PLACEHOLDER_PATH
    return None


def is_well_formed_url(value: str) -> bool:
    """Tell whether a string is an absolute http(s) URL a client can use as-is.

    Args:
        value: Any string; it is not stripped, because the gateway passes bodies through untouched.

    Returns:
        True when the scheme is http or https, a host is present, the port (if any) is valid and
        the string holds no whitespace or control characters.
    """
    return _split_http_url(value) is not None


def is_placeholder_url(value: str) -> bool:
    """Tell whether a URL was built from a missing value, e.g. ``https://site/anime/undefined/``.

    Args:
        value: Any string, well-formed or not.

    Returns:
        True when a path segment is ``undefined``, ``null``, ``none``, ``nan`` or
        ``[object Object]`` — what string interpolation of a missing value produces.
    """
    parts = _split_http_url(value)
    return parts is not None and _has_placeholder_segment(parts[1])


def is_placeholder_image_url(value: str) -> bool:
    """Tell whether an image URL points at a stand-in instead of a real picture.

    Args:
        value: Any string, well-formed or not.

    Returns:
        True for ``data:`` URIs (inline lazy-load pixels), hosts of placeholder-image services
        and paths naming a placeholder (``no-image.png``, ``/placeholder/``, ``blank.gif``...).
    """
    if _is_data_uri(value):
        return True
    parts = _split_http_url(value)
    if parts is None:
        return False
    return _is_placeholder_host(parts[0]) or _is_placeholder_image_path(parts[1])
