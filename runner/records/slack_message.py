"""The Slack-compatible message a webhook notification sends: a `text` fallback, Block Kit `blocks` and a
coloured legacy attachment with what ran, its severity, the versions before and after, the duration, the result
and where the report is (seed 000's template)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.language.durations import format_seconds
from runner.records.model import Report, RunStatus, as_report
from runner.records.timeline import STATUS_COLOURS

_EMOJI: dict[str, str] = {
    RunStatus.SUCCEEDED: ":white_check_mark:",
    RunStatus.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    RunStatus.FAILED: ":x:",
}


def escape_mrkdwn(text: str) -> str:
    """A value as Slack shows it literally (its documented escapes: &, <, >): no text a host, an operator or a
    param wrote can mention <!channel> or make a link in a message."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _hosts_lines(report: Report) -> list[str]:
    return [
        escape_mrkdwn(f"{host}: {versions.version_before or '?'} → {versions.version_after or '?'}")
        for host, versions in report.hosts.items()
        if versions.version_before or versions.version_after
    ]


@dataclass(frozen=True)
class _Shown:
    """A report's values as a Slack message shows them: each escaped for mrkdwn (escape_mrkdwn)."""

    name: str
    status: str
    severity: str
    detail: str
    operator: str
    run_id: str
    report_path: str
    duration: str  # "1m05s (budget 5m, met)"
    hosts: list[str]

    @classmethod
    def of(cls, report: Report, report_path: str) -> _Shown:
        budget = f"budget {format_seconds(report.budget_s)}, {'met' if report.budget_met else 'MISSED'}"
        return cls(
            name=escape_mrkdwn(report.runbook.name),
            status=escape_mrkdwn(report.status.value),
            severity=escape_mrkdwn(report.severity),
            detail=escape_mrkdwn(report.status_detail),
            operator=escape_mrkdwn(report.operator),
            run_id=escape_mrkdwn(report.run_id),
            report_path=escape_mrkdwn(report_path),
            duration=f"{format_seconds(report.duration_s)} ({budget})",
            hosts=_hosts_lines(report),
        )


def _fields(report: Report, shown: _Shown) -> list[dict[str, Any]]:
    fields = [
        {"type": "mrkdwn", "text": f"*Status*\n{shown.status}"},
        {"type": "mrkdwn", "text": f"*Runbook*\n`{shown.name}`"},
        {"type": "mrkdwn", "text": f"*Severity*\n{shown.severity}"},
        {"type": "mrkdwn", "text": f"*Duration*\n{shown.duration}"},
    ]
    on_failure = report.on_failure
    if on_failure.ran:
        verified = "verified" if on_failure.verified else "NOT verified"
        rollback_time = format_seconds(on_failure.duration_s)
        fields.append(
            {"type": "mrkdwn", "text": f"*Rollback*\n{on_failure.status.value} in {rollback_time}, {verified}"}
        )
    if shown.operator:
        fields.append({"type": "mrkdwn", "text": f"*Operator*\n{shown.operator}"})
    return fields


def _attachment_fields(shown: _Shown) -> list[dict[str, Any]]:
    fields = [
        {"title": "Status", "value": shown.status, "short": True},
        {"title": "Runbook", "value": shown.name, "short": True},
        {"title": "Severity", "value": shown.severity, "short": True},
        {"title": "Duration", "value": shown.duration, "short": True},
    ]
    if shown.hosts:
        fields.append({"title": "Versions", "value": "\n".join(shown.hosts), "short": False})
    if shown.report_path:
        fields.append({"title": "Report", "value": shown.report_path, "short": False})
    return fields


def webhook_payload(
    report: Report | Mapping[str, Any], report_path: str = "", channel: str | None = None
) -> dict[str, Any]:
    """Slack-compatible message: `text` (fallback), Block Kit `blocks`, and a coloured legacy attachment.

    Every value put into a mrkdwn text is escaped; the header is plain_text, which Slack shows as it is.
    """
    report = as_report(report)
    shown = _Shown.of(report, report_path)
    emoji = _EMOJI.get(report.status, ":warning:")
    text = f"{emoji} runbook {shown.name}: {shown.status} ({shown.severity}) in {format_seconds(report.duration_s)}"
    text += f" — {shown.detail}" if shown.detail else ""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{report.runbook.name}: {report.status}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "section", "fields": _fields(report, shown)[:10]},
    ]
    if shown.hosts:
        versions = ("*Versions*\n" + "\n".join(shown.hosts))[:3000]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": versions}})
    context = f"run `{shown.run_id}`" + (f" · report `{shown.report_path}`" if shown.report_path else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context[:3000]}]})
    colour = STATUS_COLOURS.get(report.status, "#607d8b")
    payload: dict[str, Any] = {
        "text": text,
        "blocks": blocks,
        "attachments": [{"color": colour, "fallback": text, "fields": _attachment_fields(shown)}],
    }
    if channel:
        payload["channel"] = channel
    return payload
