"""The Jinja environment of the report templates (report.md.j2, report.html.j2): HTML escaped, markdown not."""

from __future__ import annotations

from pathlib import Path

import jinja2

from runner.language.durations import format_seconds
from runner.records.watch_chart import chart_svg, md_cell, measurements_md, value_text

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "report_templates")),
    autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["duration"] = format_seconds
TEMPLATES.filters["md_cell"] = md_cell
TEMPLATES.filters["measurements_md"] = measurements_md
TEMPLATES.filters["value"] = value_text
TEMPLATES.globals["watch_chart"] = chart_svg
