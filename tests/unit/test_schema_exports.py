"""The committed JSON Schemas in schemas/json/ describe the payload models as they are now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.endpoints import EndpointKey
from schemas.export import DEFAULT_OUTPUT_DIR, main, render_schemas, stale_files


def test_committed_schema_files_match_the_models() -> None:
    for name, text in render_schemas().items():
        committed = DEFAULT_OUTPUT_DIR / name
        assert committed.is_file(), f"{committed} missing: run `make schemas`"
        assert committed.read_text(encoding="utf-8") == text, (
            f"{committed} stale: run `make schemas`"
        )


def test_every_endpoint_has_a_schema_file() -> None:
    assert set(render_schemas()) == {f"{key.value}.schema.json" for key in EndpointKey}


def test_rendering_is_stable_between_runs() -> None:
    assert render_schemas() == render_schemas()


def test_exported_schema_documents_required_fields_and_either_or_pairs() -> None:
    schema = json.loads(render_schemas()["movie.schema.json"])
    assert "confidence_score" in schema["required"]
    item = schema["$defs"]["Movie"]
    assert item["required"] == ["url"]
    alternatives = [[branch["required"][0] for branch in rule["anyOf"]] for rule in item["allOf"]]
    assert alternatives == [["judul", "title"], ["anime_slug", "slug"], ["cover", "cover_url"]]


def test_check_passes_when_files_are_fresh(tmp_path: Path) -> None:
    assert main(["--output-dir", str(tmp_path)]) == 0
    assert main(["--check", "--output-dir", str(tmp_path)]) == 0


def test_check_fails_and_names_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--output-dir", str(tmp_path)])
    stale = tmp_path / "movie.schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert str(stale) in capsys.readouterr().err


def test_check_fails_when_a_file_is_missing(tmp_path: Path) -> None:
    main(["--output-dir", str(tmp_path)])
    (tmp_path / "search.schema.json").unlink()
    assert stale_files(tmp_path) == [tmp_path / "search.schema.json"]


def test_export_rewrites_stale_files_with_a_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "home.schema.json").write_text("old", encoding="utf-8")
    main(["--output-dir", str(tmp_path)])
    text = (tmp_path / "home.schema.json").read_text(encoding="utf-8")
    assert text == render_schemas()["home.schema.json"]
    assert text.endswith("}\n")
