"""Export the payload models as JSON Schema files, one per endpoint, and check they are current.

``python -m schemas.export`` writes ``schemas/json/<endpoint-key>.schema.json``;
``python -m schemas.export --check`` writes nothing and exits 1 listing every missing or stale
file, so CI catches a model change without regenerated schemas. Output is byte-stable: sorted
keys, two-space indent, UTF-8, trailing newline.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from schemas.payloads import PAYLOAD_MODELS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent / "json"


def render_schemas() -> dict[str, str]:
    """Render every payload model's JSON Schema.

    Returns:
        File name (``<endpoint-key>.schema.json``) to file content, for every endpoint.
    """
    rendered: dict[str, str] = {}
    for endpoint, model in PAYLOAD_MODELS.items():
        schema = {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema(mode="validation")}
        text = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        rendered[f"{endpoint.value}.schema.json"] = text
    return rendered


def stale_files(output_dir: Path) -> list[Path]:
    """List the schema files that are missing from ``output_dir`` or differ from the models.

    Args:
        output_dir: Directory holding the exported files.

    Returns:
        Paths of missing or outdated files, sorted; empty when everything is current.
    """
    stale: list[Path] = []
    for name, text in sorted(render_schemas().items()):
        path = output_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def write_schemas(output_dir: Path) -> list[Path]:
    """Write every schema file whose content changed.

    Args:
        output_dir: Directory to write into; created when missing.

    Returns:
        Paths written, sorted.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    written = stale_files(output_dir)
    rendered = render_schemas()
    for path in written:
        # newline="" keeps "\n" on every platform, so the files stay byte-stable.
        path.write_text(rendered[path.name], encoding="utf-8", newline="")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter from the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit status: 0 on success, 1 when ``--check`` found stale files.
    """
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export", description="Export payload JSON Schemas."
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if any exported file is missing or stale"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, help="where the files live"
    )
    args = parser.parse_args(argv)
    output_dir: Path = args.output_dir
    if args.check:
        stale = stale_files(output_dir)
        for path in stale:
            sys.stderr.write(f"stale: {path}\n")
        if stale:
            sys.stderr.write("run `python -m schemas.export` (make schemas) to regenerate\n")
        return 1 if stale else 0
    for path in write_schemas(output_dir):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
