"""Generated documentation: docs/runbook-reference.md and every role's README.md.

    python -m runner.devtools.docs           write the files
    python -m runner.devtools.docs --check   exit 1 (listing them) when any file differs from what would be written

The runbook format comes from schemas/runbook.schema.json (the single source of truth), the roles from their
meta/argument_specs.yml. Output is deterministic: same inputs, same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from runner import safe_write
from runner.devtools.role_readmes import role_dirs, role_readme
from runner.devtools.runbook_reference import reference
from runner.language.role_specs import load_role
from runner.paths import PRODUCT_ROOT


def expected_files(root: Path = PRODUCT_ROOT) -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    schema = json.loads((root / "schemas" / "runbook.schema.json").read_text(encoding="utf-8"))
    roles = [load_role(path) for path in role_dirs(root / "roles")]
    problems = [f"roles/{r.name}/meta/argument_specs.yml: {r.spec_problem}" for r in roles if r.spec_problem]
    if problems:
        raise ValueError("; ".join(problems))
    files = {root / "docs" / "runbook-reference.md": reference(schema, roles)}
    for role in roles:
        files[root / "roles" / role.name / "README.md"] = role_readme(role)
    return files


def stale_files(root: Path = PRODUCT_ROOT, files: dict[Path, str] | None = None) -> list[Path]:
    """The generated files whose text on disk differs from files (by default: what would be written)."""
    stale = []
    for path, text in sorted((files if files is not None else expected_files(root)).items()):
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            stale.append(path)
    return stale


def write(root: Path = PRODUCT_ROOT) -> list[Path]:
    """Write every generated file that changed; the ones written."""
    files = expected_files(root)
    written = []
    for path in stale_files(root, files):
        path.parent.mkdir(parents=True, exist_ok=True)
        safe_write.write_text(path, files[path], mode=0o644)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.devtools.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    parser.add_argument("--root", type=Path, default=PRODUCT_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root: Path = args.root
    try:
        if args.check:
            stale = stale_files(root)
            for path in stale:
                print(f"stale: {path.relative_to(root)} (run: python -m runner.devtools.docs)", file=sys.stderr)
            return 1 if stale else 0
        for path in write(root):
            print(f"wrote {path.relative_to(root)}")
    except (ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
