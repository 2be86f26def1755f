"""The run report's files: report.json (schemas/report.schema.json) and report.md (seed rollback report template)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import safe_write
from runner.records.formats import render_markdown
from runner.records.model import Report, as_report

JSON_NAME = "report.json"
MARKDOWN_NAME = "report.md"


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    json: Path
    markdown: Path

    @classmethod
    def under(cls, directory: Path) -> ReportFiles:
        return cls(directory, directory / JSON_NAME, directory / MARKDOWN_NAME)


def write_report(report: Report | Mapping[str, Any], directory: Path) -> ReportFiles:
    """Write report.json and report.md into directory (atomically, 0600)."""
    report = as_report(report)
    files = ReportFiles.under(directory)
    directory.mkdir(parents=True, exist_ok=True)
    safe_write.write_text(files.json, json.dumps(report.to_json(), indent=2, sort_keys=False, default=str) + "\n")
    safe_write.write_text(files.markdown, render_markdown(report))
    return files


def load_report(directory: Path) -> Report:
    """The report.json of a run directory; InvalidInput when it is not a run report."""
    path = directory / JSON_NAME
    return Report.from_json(path.read_bytes(), source=str(path))


__all__ = ["JSON_NAME", "MARKDOWN_NAME", "ReportFiles", "load_report", "render_markdown", "write_report"]
