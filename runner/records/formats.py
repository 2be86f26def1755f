"""More views of one run report: a self-contained HTML page with a step x host timeline, and JUnit XML.

report.json and report.md are written by runner.records.report.write_report; write_all adds report.html and junit.xml
next to them. Every function takes the report dict exactly as it is written to report.json (already redacted).
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import jinja2

from runner.language.durations import format_seconds, parse_time

HTML_NAME = "report.html"
JUNIT_NAME = "junit.xml"

STATUS_COLOURS = {
    "succeeded": "#2e7d32",
    "rolled_back": "#ef6c00",
    "failed": "#c62828",
    "unreachable": "#6a1b9a",
    "skipped": "#9e9e9e",
    "incomplete": "#f9a825",
    "interrupted": "#6d4c41",
}

_HTML = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "report_templates")),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
_HTML.filters["duration"] = lambda value: format_seconds(float(value or 0))

# XML 1.0 forbids most control characters, which a failing command's stderr may contain.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def rolled_back_to(report: dict[str, Any]) -> str:
    """The version(s) the hosts run after on_failure — the seed report's 'version rolled back to'."""
    on_failure = report.get("on_failure") or {}
    if not on_failure.get("ran"):
        return ""
    versions: list[str] = []
    for entry in (report.get("hosts") or {}).values():
        version = (entry or {}).get("version_after")
        if version and str(version) not in versions:
            versions.append(str(version))
    return ", ".join(versions)


@dataclass(frozen=True)
class TimelineBar:
    step: str
    phase: str
    host: str
    status: str
    left_pct: float
    width_pct: float
    offset_s: float
    duration_s: float
    changed: bool
    message: str
    has_time: bool

    @property
    def colour(self) -> str:
        return STATUS_COLOURS.get(self.status, "#607d8b")


@dataclass(frozen=True)
class TimelineRow:
    step: str
    phase: str
    bars: list[TimelineBar]


@dataclass(frozen=True)
class Marker:
    label: str
    left_pct: float
    css: str


@dataclass(frozen=True)
class Timeline:
    span_s: float
    rows: list[TimelineRow]
    ticks: list[tuple[float, str]]
    markers: list[Marker]


def timeline(report: dict[str, Any]) -> Timeline:
    """Rows = steps (main first, then on_failure), one bar per host, placed relative to the run start."""
    steps = [s for s in report.get("steps") or [] if isinstance(s, dict)]
    t0 = parse_time(report.get("started"))
    ends = [parse_time(report.get("ended"))] + [parse_time(s.get("ended")) for s in steps]
    starts = [parse_time(s.get("started")) for s in steps]
    known_starts = [t for t in starts if t is not None]
    if t0 is None:
        t0 = min(known_starts) if known_starts else datetime.now(UTC)
    known_ends = [t for t in ends if t is not None]
    t_end = max(known_ends) if known_ends else t0
    span = max((t_end - t0).total_seconds(), float(report.get("duration_s") or 0), 0.001)

    def pct(moment: datetime) -> float:
        return min(max((moment - t0).total_seconds() / span * 100.0, 0.0), 100.0)

    order: list[tuple[str, str]] = []
    by_row: dict[tuple[str, str], list[TimelineBar]] = {}
    for phase in ("main", "on_failure"):
        for step in steps:
            if step.get("phase", "main") != phase:
                continue
            key = (phase, str(step.get("id", "")))
            if key not in by_row:
                order.append(key)
                by_row[key] = []
            start, end = parse_time(step.get("started")), parse_time(step.get("ended"))
            has_time = start is not None and end is not None
            left = pct(start) if start is not None else 0.0
            right = pct(end) if end is not None else left
            by_row[key].append(
                TimelineBar(
                    step=key[1],
                    phase=phase,
                    host=str(step.get("host", "")),
                    status=str(step.get("status", "")),
                    left_pct=round(left, 3),
                    width_pct=round(max(right - left, 0.5), 3) if has_time else 0.0,
                    offset_s=round((start - t0).total_seconds(), 3) if start is not None else 0.0,
                    duration_s=float(step.get("duration_s") or 0),
                    changed=bool(step.get("changed")),
                    message=str(step.get("message") or ""),
                    has_time=has_time,
                )
            )
    host_order = {host: index for index, host in enumerate(_hosts(report))}
    rows = [
        TimelineRow(step=key[1], phase=key[0], bars=sorted(by_row[key], key=lambda b: host_order.get(b.host, 0)))
        for key in order
    ]
    ticks = [(float(p), format_seconds(span * p / 100.0)) for p in (0, 25, 50, 75, 100)]
    markers: list[Marker] = []
    detected = parse_time(report.get("failure_detected"))
    if detected is not None:
        markers.append(Marker("failure detected", round(pct(detected), 3), "marker-failure"))
    on_failure = report.get("on_failure") or {}
    rb_start, rb_end = parse_time(on_failure.get("started")), parse_time(on_failure.get("ended"))
    if on_failure.get("ran") and rb_start is not None:
        markers.append(Marker("on_failure start", round(pct(rb_start), 3), "marker-rollback"))
    if on_failure.get("ran") and rb_end is not None:
        label = "service verified" if on_failure.get("verified") else "on_failure end"
        markers.append(Marker(label, round(pct(rb_end), 3), "marker-verified"))
    return Timeline(span_s=span, rows=rows, ticks=ticks, markers=markers)


def _hosts(report: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for step in report.get("steps") or []:
        host = str(step.get("host", ""))
        if host not in seen:
            seen.append(host)
    for host in report.get("hosts") or {}:
        if host not in seen:
            seen.append(host)
    return seen


def render_html(report: dict[str, Any]) -> str:
    """One self-contained page (inline CSS, no script, no external asset) with every section of report.md."""
    return _HTML.get_template("report.html.j2").render(
        report=report,
        r=_Lenient(report),
        timeline=timeline(report),
        hosts=_hosts(report),
        rolled_back_to=rolled_back_to(report),
        colours=STATUS_COLOURS,
    )


class _Lenient(dict[str, Any]):
    """report with a default for keys older or partial reports lack, so the page always renders."""

    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "runbook": {},
        "severity": "",
        "status": "unknown",
        "status_detail": "",
        "check_mode": False,
        "operator": "",
        "trigger": "",
        "started": "",
        "ended": "",
        "duration_s": 0.0,
        "budget_s": 0.0,
        "budget_from": "",
        "budget_met": True,
        "severity_target_s": 0.0,
        "severity_target_met": True,
        "failure_detected": None,
        "params": {},
        "hosts": {},
        "steps": [],
        "outputs": {},
        "on_failure": {"ran": False, "status": "not needed", "duration_s": 0.0, "restored": []},
        "backups": [],
        "verification": [],
        "data_check": "",
        "notifications": [],
        "inventory": "",
        "runner_version": "",
    }

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__({**self._DEFAULTS, **report})


def _xml_text(value: Any) -> str:
    return _XML_INVALID.sub("\ufffd", str(value))


def render_junit(report: dict[str, Any]) -> str:
    """JUnit XML: one testcase per step x host (classname runbook.phase.step, name host)."""
    runbook = str((report.get("runbook") or {}).get("name", "runbook"))
    steps = [s for s in report.get("steps") or [] if isinstance(s, dict)]
    failures = sum(1 for s in steps if s.get("status") in ("failed", "unreachable"))
    errors = sum(1 for s in steps if s.get("status") == "incomplete")
    skipped = sum(1 for s in steps if s.get("status") == "skipped")
    total_time = sum(float(s.get("duration_s") or 0) for s in steps)
    started = parse_time(report.get("started"))
    operator = str(report.get("operator", ""))
    suites = ET.Element(
        "testsuites",
        {
            "name": _xml_text(runbook),
            "tests": str(len(steps)),
            "failures": str(failures),
            "errors": str(errors),
            "skipped": str(skipped),
            "time": f"{float(report.get('duration_s') or total_time):.3f}",
        },
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": _xml_text(f"{runbook} ({report.get('run_id', '')})"),
            "tests": str(len(steps)),
            "failures": str(failures),
            "errors": str(errors),
            "skipped": str(skipped),
            "time": f"{float(report.get('duration_s') or total_time):.3f}",
            "timestamp": started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if started else "",
            "hostname": _xml_text(operator.rpartition("@")[2] or operator),
        },
    )
    properties = ET.SubElement(suite, "properties")
    on_failure = report.get("on_failure") or {}
    for name, value in (
        ("run_id", report.get("run_id", "")),
        ("status", report.get("status", "")),
        ("status_detail", report.get("status_detail", "")),
        ("severity", report.get("severity", "")),
        ("operator", operator),
        ("started", report.get("started", "")),
        ("ended", report.get("ended", "")),
        ("budget_s", report.get("budget_s", "")),
        ("budget_met", report.get("budget_met", "")),
        ("severity_target_met", report.get("severity_target_met", "")),
        ("on_failure", on_failure.get("status", "")),
        ("data_check", report.get("data_check", "")),
    ):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        ET.SubElement(properties, "property", {"name": name, "value": _xml_text(text)})
    for step in steps:
        status = str(step.get("status", ""))
        message = str(step.get("message") or "")
        phase = str(step.get("phase", "main"))
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": _xml_text(f"{runbook}.{phase}.{step.get('id', '')}"),
                "name": _xml_text(step.get("host", "")),
                "time": f"{float(step.get('duration_s') or 0):.3f}",
            },
        )
        if status in ("failed", "unreachable"):
            failure = ET.SubElement(
                case, "failure", {"message": _xml_text(message or status), "type": _xml_text(status)}
            )
            failure.text = _xml_text(
                f"step {step.get('id')} ({phase}) on {step.get('host')}: {status}\n{message}".rstrip()
            )
        elif status == "skipped":
            ET.SubElement(case, "skipped", {"message": _xml_text(message or "skipped")})
        elif status == "incomplete":
            error = ET.SubElement(
                case,
                "error",
                {"message": _xml_text(message or "the step did not finish on this host"), "type": "incomplete"},
            )
            error.text = _xml_text(f"step {step.get('id')} ({phase}) on {step.get('host')} did not finish")
        if step.get("changed") or message:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(
                "\n".join(
                    line
                    for line in (
                        f"changed: {'yes' if step.get('changed') else 'no'}",
                        f"started: {step.get('started', '')}",
                        f"ended: {step.get('ended', '')}",
                        f"message: {message}" if message else "",
                    )
                    if line
                )
            )
    ET.indent(suites, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _atomic_write(path: Path, text: str) -> None:
    """Write text to a unique temp file in the same directory, fsync, then rename over path."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_all(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Write report.html and junit.xml into directory (atomically); returns {'html': path, 'junit': path}."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {"html": directory / HTML_NAME, "junit": directory / JUNIT_NAME}
    _atomic_write(written["html"], render_html(report))
    _atomic_write(written["junit"], render_junit(report))
    return written


__all__ = [
    "HTML_NAME",
    "JUNIT_NAME",
    "render_html",
    "render_junit",
    "rolled_back_to",
    "timeline",
    "write_all",
]
