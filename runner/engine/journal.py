"""Append-only, fsynced record of a run as it happens, so nothing done is lost if the control node dies.

Besides the journal, a run directory holds the run's request (request.json), written before anything else: what
was asked (runbook, params, inventory), so that a run killed before it began (before its leases and run_start)
can still be resumed, from its first step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import safe_write
from runner.records.redact import Redactor

JOURNAL_FILE = "journal.jsonl"
REQUEST_FILE = "request.json"


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def journal_record(redactor: Redactor, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One record as the journal keeps it: secrets scrubbed, and the fields that held one listed as masked."""
    record: dict[str, Any] = redactor.scrub({"at": utcnow(), "kind": kind, **fields})
    masked = redactor.masked_fields(fields)
    if masked:
        record["masked"] = masked  # what holds a secret, kept masked: resume asks for it again
    return record


class Journal:
    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self.redactor = redactor
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the run directory: its owner's only
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, kind: str, **fields: Any) -> None:
        record = journal_record(self.redactor, kind, fields)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
        os.write(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_request(run_dir: Path, redactor: Redactor, **fields: Any) -> None:
    """The run's request, in the form of a run_start record, before the run directory holds anything else."""
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = journal_record(redactor, "run_request", fields)
    safe_write.write_text(run_dir / REQUEST_FILE, json.dumps(record, sort_keys=True, default=str) + "\n")


class JournalDamaged(ValueError):
    """A line other than a torn last one is not a journal record (the journal was edited by hand)."""


MAX_DEPTH = 512  # the runner's records are far shallower (what they hold is checked where it is used)


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """The record a journal line holds; None when it is not a JSON object (torn, edited, nested too deep)."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, an integer too long to convert
        return None
    return record if isinstance(record, dict) and nesting_depth(record) <= MAX_DEPTH else None


def nesting_depth(value: Any) -> int:
    """How deeply containers nest in a decoded JSON value (iterative: never recurses)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def journal_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) in order. A torn last line (a crash mid-write: no newline) is ignored; any other
    line that is not a record raises JournalDamaged."""
    lines = path.read_bytes().splitlines(keepends=True)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = parse_record(raw)
        if record is not None:
            yield number, record
        elif number < len(lines) or raw.endswith(b"\n"):
            raise JournalDamaged(f"line {number} is not a journal record")


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Records in order; a torn last line (crash mid-write) is ignored."""
    for _, record in journal_records(path):
        yield record
