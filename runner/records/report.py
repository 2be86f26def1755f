"""The run report: report.json (schemas/report.schema.json) and report.md (seed rollback report template)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from runner.language.durations import format_seconds

STATUS_SUCCEEDED = "succeeded"
STATUS_ROLLED_BACK = "rolled_back"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "report_templates")),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
_TEMPLATES.filters["duration"] = format_seconds


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    json: Path
    markdown: Path


def hosts_versions(step_results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per host: the first version_before and the last version_after any step reported."""
    hosts: dict[str, dict[str, Any]] = {}
    for result in step_results:
        outputs = result.get("outputs") or {}
        entry = hosts.setdefault(result["host"], {"version_before": None, "version_after": None})
        if outputs.get("version_before") and entry["version_before"] is None:
            entry["version_before"] = outputs["version_before"]
        if outputs.get("version_after"):
            entry["version_after"] = outputs["version_after"]
    return hosts


def collect_backups(step_results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    backups = []
    for result in step_results:
        backup = (result.get("outputs") or {}).get("backup")
        if isinstance(backup, dict) and result.get("status") == "succeeded":
            backups.append({"step": result["step_id"], "host": result["host"], **backup})
    return backups


def collect_verification(step_results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for result in step_results:
        for check in (result.get("outputs") or {}).get("checks") or []:
            if isinstance(check, dict):
                checks.append(
                    {
                        "step": result["step_id"],
                        "phase": result["phase"],
                        "host": result["host"],
                        "name": str(check.get("name", "")),
                        "ok": bool(check.get("ok")),
                        "detail": str(check.get("detail", "")),
                    }
                )
    return checks


def render_markdown(report: dict[str, Any]) -> str:
    return _TEMPLATES.get_template("report.md.j2").render(report=report)


def write_report(report: dict[str, Any], directory: Path) -> ReportFiles:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    md_path = directory / "report.md"
    _atomic_write(json_path, json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    _atomic_write(md_path, render_markdown(report))
    return ReportFiles(directory, json_path, md_path)


def _atomic_write(path: Path, text: str) -> None:
    import os

    temp = path.with_name(path.name + ".partial")
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(path)


def load_report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    return data
