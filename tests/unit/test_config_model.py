from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config_file import ConfigFileError, load_config_file, parse_config

PRD_EXAMPLE = b"""
{
  "categories": [
    {
      "name": "anime",
      "is_active": true,
      "endpoints": [
        {
          "path": "/api/v1/home",
          "primary_apis": [
            { "source_name": "samehadaku_v1", "base_url": "http://api_source_1/v1", "priority": 1 },
            { "source_name": "otakudesu_v3", "base_url": "http://api_source_2/v1", "priority": 2 }
          ],
          "fallback_apis": {
            "samehadaku_v1": ["http://fallback1/v1", "http://fallback2/v1"],
            "otakudesu_v3": ["http://fallback3/v1"]
          }
        }
      ]
    }
  ]
}
"""


def test_prd_example_loads_exactly_as_written_with_spec_defaults() -> None:
    config = parse_config(PRD_EXAMPLE, "prd.json")
    endpoint = config.categories[0].endpoints[0]
    assert [api.source_name for api in endpoint.primary_apis] == ["samehadaku_v1", "otakudesu_v3"]
    assert endpoint.fallback_apis["samehadaku_v1"] == ["http://fallback1/v1", "http://fallback2/v1"]
    assert endpoint.effective_ttl_seconds == 900
    assert endpoint.stale_ttl_seconds == 86_400
    assert endpoint.timeout_seconds == 15
    assert endpoint.min_confidence == 0.5


def test_every_bad_field_is_reported_with_its_path() -> None:
    bad = b"""{"categories": [{"name": "anime", "endpoints": [{
        "path": "/api/v1/nope",
        "timeout_seconds": 0,
        "primary_apis": [{"source_name": "a", "base_url": "ftp://x.example", "priority": 1,
                          "colour": "red"}]}]}]}"""
    with pytest.raises(ConfigFileError) as error:
        parse_config(bad, "bad.json")
    problems = error.value.problems
    assert any(p.startswith("categories[0].endpoints[0].path: unknown endpoint") for p in problems)
    assert "categories[0].endpoints[0].timeout_seconds: Input should be greater than 0" in problems
    assert (
        "categories[0].endpoints[0].primary_apis[0].base_url: must start with http:// or https://"
        in problems
    )
    assert (
        "categories[0].endpoints[0].primary_apis[0].colour: Extra inputs are not permitted"
        in problems
    )


def test_fallbacks_must_belong_to_a_primary() -> None:
    bad = b"""{"categories": [{"name": "anime", "endpoints": [{"path": "/api/v1/home",
        "primary_apis": [{"source_name": "a", "base_url": "http://a.example", "priority": 1}],
        "fallback_apis": {"typo": ["http://f.example"]}}]}]}"""
    with pytest.raises(ConfigFileError, match="problem") as error:
        parse_config(bad, "bad.json")
    assert "is not a primary source_name" in error.value.problems[0]


def test_reserved_and_duplicate_category_names_are_rejected() -> None:
    with pytest.raises(ConfigFileError) as error:
        parse_config(b'{"categories": [{"name": "all"}, {"name": "x"}, {"name": "X"}]}', "c")
    assert any("reserved" in p for p in error.value.problems)
    with pytest.raises(ConfigFileError) as duplicate:
        parse_config(b'{"categories": [{"name": "x"}, {"name": "X"}]}', "c")
    assert "defined more than once" in duplicate.value.problems[0]


def test_broken_json_and_unreadable_files_give_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as broken:
        parse_config(b'{"categories": [', "c.json")
    assert broken.value.problems[0].startswith("<document>: not valid JSON")
    with pytest.raises(ConfigFileError) as missing:
        load_config_file(tmp_path / "absent.json")
    assert missing.value.problems == ["<file>: cannot read (No such file or directory)"]
