"""Notifications at the end of a run: Slack-compatible webhooks and SMTP email (spec.notify).

A notification fires only for the outcomes in its `on` list: success (succeeded), failure (failed),
rolled_back, interrupted. URL, channel, recipients and subject may be templates over params
(`{{ params.webhook }}`), rendered with jinja2's SandboxedEnvironment from the real param values — so a secret
may be used in a URL — but whatever is recorded (the result's target and error) and whatever is sent (payload,
subject, body) passes through the run's redactor: no secret value leaves in a message or lands in a report.

Delivery never raises: each notification gives {kind, target, ok, error, attempts}. Webhooks are POSTed with
urllib (timeout, 3 attempts with exponential backoff on connection errors, 429 and 5xx). Email goes through
smtplib with RUNBOOK_SMTP_HOST / RUNBOOK_SMTP_PORT / RUNBOOK_SMTP_FROM (default localhost:25,
runbook@<hostname>), optional RUNBOOK_SMTP_STARTTLS=1 and RUNBOOK_SMTP_USER / RUNBOOK_SMTP_PASSWORD.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from runner.language.durations import format_seconds

OUTCOME_FOR_STATUS = {
    "succeeded": "success",
    "failed": "failure",
    "rolled_back": "rolled_back",
    "interrupted": "interrupted",
}
DEFAULT_ON = ("failure", "rolled_back")
ATTEMPTS = 3
BACKOFF_S = 0.5
TIMEOUT_S = 10.0

_EMOJI = {"succeeded": ":white_check_mark:", "rolled_back": ":leftwards_arrow_with_hook:", "failed": ":x:"}
_COLOUR = {"succeeded": "#2e7d32", "rolled_back": "#ef6c00", "failed": "#c62828", "interrupted": "#6d4c41"}


class RedactorLike(Protocol):
    def text(self, value: str) -> str: ...

    def scrub(self, value: Any) -> Any: ...


class _Retryable(Exception):
    """A delivery error worth another attempt."""


class _Fatal(Exception):
    """A delivery error another attempt will not fix (4xx, bad address)."""


_SANDBOX = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _field(notification: Any, name: str, default: Any = None) -> Any:
    """A notification field from a runner.language.model.Notification (kind, on, target{...}) or a plain dict."""
    if isinstance(notification, Mapping):
        if name in notification:
            return notification[name]
        target = notification.get("target")
        return target.get(name, default) if isinstance(target, Mapping) else default
    if name in ("kind", "on"):
        return getattr(notification, name, default)
    target = getattr(notification, "target", None)
    return target.get(name, default) if isinstance(target, Mapping) else default


def render_template(text: str, params: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    """A notification template over params (and the run's status, runbook, run_id, severity) in a sandbox."""
    if "{{" not in text and "{%" not in text:
        return text
    runbook = report.get("runbook") or {}
    return _SANDBOX.from_string(text).render(
        params=dict(params),
        status=report.get("status", ""),
        run_id=report.get("run_id", ""),
        severity=report.get("severity", ""),
        runbook=runbook.get("name", "") if isinstance(runbook, Mapping) else str(runbook),
    )


def fires(notification: Any, status: str) -> bool:
    """Whether a notification's `on` list covers this run status."""
    on = _field(notification, "on") or DEFAULT_ON
    return OUTCOME_FOR_STATUS.get(status, status) in tuple(on)


def _hosts_lines(report: Mapping[str, Any]) -> list[str]:
    lines = []
    for host, versions in (report.get("hosts") or {}).items():
        if isinstance(versions, Mapping) and (versions.get("version_before") or versions.get("version_after")):
            lines.append(f"{host}: {versions.get('version_before') or '?'} → {versions.get('version_after') or '?'}")
    return lines


def webhook_payload(report: Mapping[str, Any], report_path: str = "", channel: str | None = None) -> dict[str, Any]:
    """Slack-compatible message: `text` (fallback), Block Kit `blocks`, and a coloured legacy attachment."""
    runbook = report.get("runbook") or {}
    name = str(runbook.get("name", "")) if isinstance(runbook, Mapping) else str(runbook)
    status = str(report.get("status", ""))
    severity = str(report.get("severity", ""))
    duration = format_seconds(float(report.get("duration_s") or 0))
    budget = format_seconds(float(report.get("budget_s") or 0))
    budget_word = "met" if report.get("budget_met") else "MISSED"
    detail = str(report.get("status_detail") or "")
    hosts = _hosts_lines(report)
    on_failure = report.get("on_failure") or {}
    emoji = _EMOJI.get(status, ":warning:")
    text = f"{emoji} runbook {name}: {status} ({severity}) in {duration}" + (f" — {detail}" if detail else "")
    fields = [
        {"type": "mrkdwn", "text": f"*Status*\n{status}"},
        {"type": "mrkdwn", "text": f"*Runbook*\n`{name}`"},
        {"type": "mrkdwn", "text": f"*Severity*\n{severity}"},
        {"type": "mrkdwn", "text": f"*Duration*\n{duration} (budget {budget}, {budget_word})"},
    ]
    if isinstance(on_failure, Mapping) and on_failure.get("ran"):
        verified = "verified" if on_failure.get("verified") else "NOT verified"
        rollback_time = format_seconds(float(on_failure.get("duration_s") or 0))
        fields.append(
            {"type": "mrkdwn", "text": f"*Rollback*\n{on_failure.get('status')} in {rollback_time}, {verified}"}
        )
    if report.get("operator"):
        fields.append({"type": "mrkdwn", "text": f"*Operator*\n{report.get('operator')}"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{name}: {status}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "section", "fields": fields[:10]},
    ]
    if hosts:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": ("*Versions*\n" + "\n".join(hosts))[:3000]}}
        )
    context = f"run `{report.get('run_id', '')}`" + (f" · report `{report_path}`" if report_path else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context[:3000]}]})
    attachment_fields = [
        {"title": "Status", "value": status, "short": True},
        {"title": "Runbook", "value": name, "short": True},
        {"title": "Severity", "value": severity, "short": True},
        {"title": "Duration", "value": f"{duration} (budget {budget}, {budget_word})", "short": True},
    ]
    if hosts:
        attachment_fields.append({"title": "Versions", "value": "\n".join(hosts), "short": False})
    if report_path:
        attachment_fields.append({"title": "Report", "value": report_path, "short": False})
    payload: dict[str, Any] = {
        "text": text,
        "blocks": blocks,
        "attachments": [{"color": _COLOUR.get(status, "#607d8b"), "fallback": text, "fields": attachment_fields}],
    }
    if channel:
        payload["channel"] = channel
    return payload


def _retrying(action: Callable[[], None], attempts: int, backoff_s: float) -> tuple[bool, str, int]:
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            action()
            return True, "", attempt
        except _Fatal as exc:
            return False, str(exc), attempt
        except _Retryable as exc:
            error = str(exc)
        if attempt < attempts:
            time.sleep(backoff_s * (2 ** (attempt - 1)))
    return False, error, attempts


def post_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout_s: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> tuple[bool, str, int]:
    """POST JSON; (ok, error, attempts). Retries connection errors, timeouts, 429 and 5xx."""
    body = json.dumps(payload).encode("utf-8")

    def once() -> None:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "runbook-runner"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            message = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(message) from None
            raise _Fatal(message) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"cannot reach the webhook: {reason}") from None

    if not url.lower().startswith(("http://", "https://")):
        return False, "webhook url must start with http:// or https://", 0
    return _retrying(once, attempts, backoff_s)


def smtp_settings() -> dict[str, Any]:
    port_text = os.environ.get("RUNBOOK_SMTP_PORT", "25")
    try:
        port = int(port_text)
    except ValueError:
        port = 25
    return {
        "host": os.environ.get("RUNBOOK_SMTP_HOST") or "localhost",
        "port": port,
        "sender": os.environ.get("RUNBOOK_SMTP_FROM") or f"runbook@{socket.gethostname()}",
        "starttls": os.environ.get("RUNBOOK_SMTP_STARTTLS", "") not in ("", "0", "false", "no"),
        "user": os.environ.get("RUNBOOK_SMTP_USER") or "",
        "password": os.environ.get("RUNBOOK_SMTP_PASSWORD") or "",
    }


def send_email(
    recipients: list[str],
    subject: str,
    body: str,
    *,
    timeout_s: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> tuple[bool, str, int]:
    """Send a plain-text (markdown) email through the configured SMTP server; (ok, error, attempts)."""
    settings = smtp_settings()
    message = EmailMessage()
    message["From"] = settings["sender"]
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=socket.gethostname() or "runbook")
    message["X-Runbook-Runner"] = "1"
    message.set_content(body, subtype="plain", charset="utf-8")

    def once() -> None:
        try:
            with smtplib.SMTP(settings["host"], settings["port"], timeout=timeout_s) as smtp:
                if settings["starttls"]:
                    smtp.starttls()
                if settings["user"]:
                    smtp.login(settings["user"], settings["password"])
                refused = smtp.send_message(message)
            if refused:
                raise _Fatal("refused recipients: " + ", ".join(sorted(refused)))
        except smtplib.SMTPRecipientsRefused as exc:
            raise _Fatal("refused recipients: " + ", ".join(sorted(exc.recipients))) from None
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error
            text = f"SMTP {exc.smtp_code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
            if 400 <= exc.smtp_code < 500:
                raise _Retryable(text) from None
            raise _Fatal(text) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _Retryable(f"cannot reach SMTP {settings['host']}:{settings['port']}: {exc}") from None

    if not recipients:
        return False, "no recipients", 0
    return _retrying(once, attempts, backoff_s)


def default_subject(report: Mapping[str, Any]) -> str:
    runbook = report.get("runbook") or {}
    name = runbook.get("name", "") if isinstance(runbook, Mapping) else str(runbook)
    status = str(report.get("status", "")).upper().replace("_", " ")
    return f"[runbook] {status}: {name} ({report.get('severity', '')})"


def _markdown(report: Mapping[str, Any]) -> str:
    try:
        from runner.records.report import render_markdown

        return render_markdown(dict(report))
    except Exception:  # a report too partial for the template still sends a readable summary
        return json.dumps(dict(report), indent=2, default=str)


def send_one(
    notification: Any,
    report: Mapping[str, Any],
    params: Mapping[str, Any],
    redactor: RedactorLike,
    *,
    report_path: str = "",
    timeout_s: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> dict[str, Any]:
    """Deliver one notification now (whatever the outcome); never raises."""
    kind = str(_field(notification, "kind", "") or "")
    safe_report: Mapping[str, Any] = redactor.scrub(dict(report))
    target = ""
    try:
        if kind == "webhook":
            url = render_template(str(_field(notification, "url", "") or ""), params, safe_report)
            target = redactor.text(url)
            channel = _field(notification, "channel")
            channel_text = redactor.text(render_template(str(channel), params, safe_report)) if channel else None
            payload = redactor.scrub(webhook_payload(safe_report, report_path, channel_text))
            ok, error, tries = post_webhook(url, payload, timeout_s=timeout_s, attempts=attempts, backoff_s=backoff_s)
        elif kind == "email":
            raw_to = _field(notification, "to") or []
            recipients = [
                render_template(str(r), params, safe_report).strip()
                for r in ([raw_to] if isinstance(raw_to, str) else list(raw_to))
            ]
            recipients = [r for r in recipients if r]
            target = redactor.text(", ".join(recipients))
            subject_template = _field(notification, "subject")
            subject = (
                render_template(str(subject_template), params, safe_report)
                if subject_template
                else default_subject(safe_report)
            )
            subject = " ".join(redactor.text(subject).split())  # no header injection through newlines
            body = redactor.text(_markdown(safe_report))
            if report_path:
                body += f"\nReport: {report_path}\n"
            ok, error, tries = send_email(
                recipients, subject, body, timeout_s=timeout_s, attempts=attempts, backoff_s=backoff_s
            )
        else:
            ok, error, tries = False, f"unknown notification kind {kind!r}", 0
    except (TemplateError, SecurityError) as exc:
        ok, error, tries = False, f"template error: {exc}", 0
    except Exception as exc:  # never let a notification break the end of a run
        ok, error, tries = False, f"{type(exc).__name__}: {exc}", 0
    return {"kind": kind, "target": target, "ok": ok, "error": redactor.text(error), "attempts": tries}


def _fires_safely(notification: Any, status: str) -> bool:
    try:
        return fires(notification, status)
    except Exception:  # a malformed `on`: send rather than stay silent
        return True


def send_all(
    notifications: Iterable[Any],
    report: Mapping[str, Any],
    params: Mapping[str, Any],
    redactor: RedactorLike,
    *,
    report_path: str | Path = "",
    timeout_s: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> list[dict[str, Any]]:
    """Send every notification whose `on` covers report['status']; one result per notification sent."""
    status = str(report.get("status", ""))
    results = []
    for notification in notifications or ():
        if not _fires_safely(notification, status):
            continue
        results.append(
            send_one(
                notification,
                report,
                params,
                redactor,
                report_path=str(report_path or ""),
                timeout_s=timeout_s,
                attempts=attempts,
                backoff_s=backoff_s,
            )
        )
    return results


__all__ = [
    "OUTCOME_FOR_STATUS",
    "default_subject",
    "fires",
    "post_webhook",
    "render_template",
    "send_all",
    "send_email",
    "send_one",
    "smtp_settings",
    "webhook_payload",
]
