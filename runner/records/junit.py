"""junit.xml of a run: one testcase per step x host (classname runbook.phase.step, name host)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from runner.language.durations import parse_time
from runner.records.model import Report, StepResult, StepStatus, Watch, as_report

# XML 1.0 forbids most control characters, which a failing command's stderr may contain.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return _XML_INVALID.sub("\ufffd", text)


def render_junit(report: Report | Mapping[str, Any]) -> str:
    report = as_report(report)
    runbook = report.runbook.name
    watches = {(w.step, w.phase, w.host): w for w in report.watches if w.failed}
    counts = _counts(report.steps, watches)
    time_s = report.duration_s or sum(s.duration_s for s in report.steps)
    suites = ET.Element("testsuites", {"name": _xml_text(runbook), **counts, "time": f"{time_s:.3f}"})
    started = parse_time(report.started)
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": _xml_text(f"{runbook} ({report.run_id})"),
            **counts,
            "time": f"{time_s:.3f}",
            "timestamp": started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if started else "",
            "hostname": _xml_text(report.operator.rpartition("@")[2] or report.operator),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(report):
        ET.SubElement(properties, "property", {"name": name, "value": _xml_text(value)})
    for step in report.steps:
        _testcase(suite, runbook, step, watches.get((step.id, step.phase, step.host)))
    ET.indent(suites, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _counts(steps: tuple[StepResult, ...], failed_watches: dict[tuple[str, str, str], Watch]) -> dict[str, str]:
    def failure(s: StepResult) -> bool:
        return s.failed or (s.status == StepStatus.SUCCEEDED and (s.id, s.phase, s.host) in failed_watches)

    return {
        "tests": str(len(steps)),
        "failures": str(sum(1 for s in steps if failure(s))),
        "errors": str(sum(1 for s in steps if s.status == StepStatus.INCOMPLETE)),
        "skipped": str(sum(1 for s in steps if s.status == StepStatus.SKIPPED)),
    }


def _properties(report: Report) -> list[tuple[str, Any]]:
    return [
        ("run_id", report.run_id),
        ("status", report.status.value),
        ("status_detail", report.status_detail),
        ("severity", report.severity),
        ("operator", report.operator),
        ("started", report.started),
        ("ended", report.ended),
        ("budget_s", report.budget_s),
        ("budget_met", report.budget_met),
        ("severity_target_met", report.severity_target_met),
        ("on_failure", report.on_failure.status.value),
        ("data_check", report.data_check.summary),
    ]


def _testcase(suite: ET.Element, runbook: str, step: StepResult, watch: Watch | None = None) -> None:
    """watch: the failed (breached or inconclusive) watch of this step x host, a failure even when the step passed
    (on_inconclusive: pass)."""
    status, message = step.status.value, step.message
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": _xml_text(f"{runbook}.{step.phase}.{step.id}"),
            "name": _xml_text(step.host),
            "time": f"{float(step.duration_s):.3f}",
        },
    )
    where = f"step {step.id} ({step.phase}) on {step.host}"
    if watch is not None and (step.failed or step.status == StepStatus.SUCCEEDED):
        said = f"watch {watch.verdict}: {watch.reason}"
        failure = ET.SubElement(case, "failure", {"message": _xml_text(said), "type": f"watch {watch.verdict}"})
        failure.text = _xml_text(f"{where}: {said}\n{message}".rstrip())
    elif step.failed:
        failure = ET.SubElement(case, "failure", {"message": _xml_text(message or status), "type": status})
        failure.text = _xml_text(f"{where}: {status}\n{message}".rstrip())
    elif step.status == StepStatus.SKIPPED:
        ET.SubElement(case, "skipped", {"message": _xml_text(message or "skipped")})
    elif step.status == StepStatus.INCOMPLETE:
        attributes = {"message": _xml_text(message or "the step did not finish on this host"), "type": status}
        ET.SubElement(case, "error", attributes).text = _xml_text(f"{where} did not finish")
    if step.changed or message:
        lines = [f"changed: {'yes' if step.changed else 'no'}", f"started: {step.started}", f"ended: {step.ended}"]
        if message:
            lines.append(f"message: {message}")
        ET.SubElement(case, "system-out").text = _xml_text("\n".join(lines))
