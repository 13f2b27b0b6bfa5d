from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.ratelimit import client_ip, parse_trusted_proxies
from gateway.settings import Settings


def test_settings_come_from_the_injected_mapping_not_the_process_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APICAT_RATE_LIMIT", "1/second")
    settings = Settings.from_environ({"APICAT_RATE_LIMIT": "5/second"})
    assert settings.rate_limit == "5/second"
    assert Settings.from_environ({}).rate_limit == "120/minute"


def test_false_strings_are_false_and_lists_split_on_commas() -> None:
    settings = Settings.from_environ(
        {"APICAT_EXPOSE_UPSTREAM_URLS": "false", "APICAT_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}
    )
    assert settings.expose_upstream_urls is False
    assert settings.trusted_proxies == ("10.0.0.0/8", "::1")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("APICAT_RATE_LIMIT", "lots", "is not a rate limit"),
        ("APICAT_RETRY_ATTEMPTS", "0", "greater than or equal to 1"),
        ("APICAT_TRUSTED_PROXIES", "not-a-net", "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_bad_settings_are_rejected_with_the_reason(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.from_environ({variable: value})


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = parse_trusted_proxies(["10.0.0.0/8"])
    assert client_ip("10.0.0.5", "203.0.113.9", trusted) == "203.0.113.9"
    assert client_ip("198.51.100.1", "203.0.113.9", trusted) == "198.51.100.1"
    assert client_ip("10.0.0.5", "203.0.113.9", ()) == "10.0.0.5"


def test_spoofed_leading_forwarded_entries_are_ignored() -> None:
    trusted = parse_trusted_proxies(["10.0.0.0/8"])
    # The client prepended a fake address; the proxy appended the real one.
    assert client_ip("10.0.0.5", "1.2.3.4, 203.0.113.9, 10.0.0.7", trusted) == "203.0.113.9"
