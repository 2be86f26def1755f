"""docs/drills.md from one run of the drills (`make drill`), never by hand.

One row per shipped runbook (runbooks/*.yml): its seed and section (metadata.source), severity and budget, and
from its drill's result (<results>/<scenario>.json, written by the scenario's verify) the measured time of the
runbook run, the rows lost, whether a second run changed nothing (the scenario's `idempotence` step), the verdict
and the date. A runbook without a scenario gets a row that says what is missing to drill it here.

    python -m runner.devtools.drills_table --results DIR [--output docs/drills.md] [--project .]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runner import safe_write
from runner.devtools.markdown import cell, table
from runner.language.durations import format_seconds

ROOT = Path(__file__).resolve().parents[2]
HEADER = ("Runbook", "Seed and section", "Severity", "Budget", "Measured", "Rows lost", "Idempotent", "Result", "Date")
MISSING = {
    "mongodb": "not drilled here: the lab has no MongoDB host and this machine no mongod/mongodump",
    "kubernetes": "not drilled here: the lab has no Kubernetes cluster (kubectl and a kubeconfig)",
}


@dataclass(frozen=True)
class Runbook:
    name: str
    source: str
    severity: str
    budget: str
    tags: tuple[str, ...]


def shipped_runbooks(project: Path) -> list[Runbook]:
    found = []
    for path in sorted((project / "runbooks").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        meta, spec = data.get("metadata") or {}, data.get("spec") or {}
        found.append(Runbook(
            name=str(meta.get("name") or path.stem), source=str(meta.get("source") or ""),
            severity=str(meta.get("severity") or ""), budget=str(spec.get("budget") or ""),
            tags=tuple(str(t).lower() for t in meta.get("tags") or ()),
        ))  # fmt: skip
    return found


def test_sequence(project: Path, scenario: str) -> list[str] | None:
    """The scenario's molecule test_sequence; None when there is no such scenario."""
    path = project / "molecule" / scenario / "molecule.yml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [str(step) for step in (data.get("scenario") or {}).get("test_sequence") or ()]


def read_result(results: Path, scenario: str) -> dict[str, Any] | None:
    try:
        data = json.loads((results / f"{scenario}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _seconds(value: object) -> str:
    return format_seconds(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _verdict(result: dict[str, Any] | None) -> str:
    if result is None:
        return "FAILED: stopped before verify (see the molecule output)"
    if result.get("passed"):
        return "passed"
    failed = [str(name) for name, ok in (result.get("checks") or {}).items() if not ok]
    return "FAILED: not " + "; not ".join(failed) if failed else "FAILED"


def _date(result: dict[str, Any] | None, today: str) -> str:
    ended = str(((result or {}).get("report") or {}).get("ended") or "")
    return ended[:10] or today


def row(book: Runbook, sequence: list[str] | None, result: dict[str, Any] | None, today: str) -> list[str]:
    first = [book.name, book.source, book.severity]
    if sequence is None:
        why = next((text for tag, text in MISSING.items() if tag in book.tags), "no drill scenario yet")
        return [*first, book.budget or "—", "—", "—", "—", why, "—"]
    budget = _seconds(result.get("budget_s")) if result else book.budget or "—"
    passed = bool(result and result.get("passed"))
    if "idempotence" not in sequence:
        idempotent = "n/a (a second run acts again by design)"
    else:
        idempotent = "—" if result is None else ("yes" if passed else "yes (the drill failed after it)")
    lost = str(result.get("rows_lost", "—")) if result else "—"
    return [*first, budget, _seconds((result or {}).get("duration_s")), lost, idempotent, _verdict(result),
            _date(result, today)]


def render(project: Path, results: Path, today: str | None = None) -> str:
    today = today or datetime.now(UTC).date().isoformat()
    lines = [
        "# Drills",
        "",
        "Written by `make drill` from the results of that run (`runner/devtools/drills_table.py`); do not edit.",
        "Each drill is a Molecule scenario, `molecule/<runbook>/`, against the local lab: it puts the lab in the",
        "incident's state, runs the runbook through the CLI and checks from outside that the service is back, that",
        "the budget and the severity target were met and that no row was lost (row counts and checksums of every",
        "table, before and after). Measured: the runbook's run, as its report records it.",
        "",
    ]
    rows = []
    for book in shipped_runbooks(project):
        sequence = test_sequence(project, book.name)
        cells = row(book, sequence, read_result(results, book.name) if sequence is not None else None, today)
        rows.append([cell(c) for c in cells])
    lines += table(HEADER, rows)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", required=True, type=Path, help="where the drills left their results")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "drills.md")
    parser.add_argument("--project", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    text = render(args.project, args.results)
    safe_write.write_text(args.output, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
