"""The views of one run report: report.md (the seed rollback report), a self-contained report.html with a step x
host timeline, and junit.xml. Each takes the typed Report, or the dict of a report.json (already redacted).

report.json and report.md are written by runner.records.report.write_report; write_all adds report.html and
junit.xml next to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner import safe_write
from runner.records.junit import render_junit
from runner.records.model import Report, as_report
from runner.records.templates import TEMPLATES
from runner.records.timeline import STATUS_COLOURS, host_names, incident_timeline, timeline

HTML_NAME = "report.html"
JUNIT_NAME = "junit.xml"


def rolled_back_to(report: Report | Mapping[str, Any]) -> str:
    """The version(s) the hosts run after on_failure — the seed report's 'version rolled back to'."""
    return ", ".join(as_report(report).rolled_back_to)


def render_markdown(report: Report | Mapping[str, Any]) -> str:
    report = as_report(report)
    return TEMPLATES.get_template("report.md.j2").render(report=report, incident_timeline=incident_timeline(report))


def render_html(report: Report | Mapping[str, Any]) -> str:
    """One self-contained page (inline CSS, no script, no external asset) with every section of report.md."""
    report = as_report(report)
    return TEMPLATES.get_template("report.html.j2").render(
        report=report,
        timeline=timeline(report),
        hosts=host_names(report),
        rolled_back_to=rolled_back_to(report),
        colours=STATUS_COLOURS,
        incident_timeline=incident_timeline(report),
    )


def write_all(report: Report | Mapping[str, Any], directory: Path) -> dict[str, Path]:
    """Write report.html and junit.xml into directory (atomically, 0600); returns {'html': path, 'junit': path}."""
    report = as_report(report)
    directory.mkdir(parents=True, exist_ok=True)
    written = {"html": directory / HTML_NAME, "junit": directory / JUNIT_NAME}
    safe_write.write_text(written["html"], render_html(report))
    safe_write.write_text(written["junit"], render_junit(report))
    return written


__all__ = [
    "HTML_NAME",
    "JUNIT_NAME",
    "render_html",
    "render_junit",
    "render_markdown",
    "rolled_back_to",
    "timeline",
    "write_all",
]
