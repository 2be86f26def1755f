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
import re
import smtplib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from runner.records.formats import render_markdown
from runner.records.model import NotificationResult, Report, RunStatus, as_report
from runner.records.redact import Redactor
from runner.records.slack_message import webhook_payload

OUTCOME_FOR_STATUS: dict[str, str] = {
    RunStatus.SUCCEEDED: "success",
    RunStatus.FAILED: "failure",
    RunStatus.ROLLED_BACK: "rolled_back",
    RunStatus.INTERRUPTED: "interrupted",
}
DEFAULT_ON = ("failure", "rolled_back")
ATTEMPTS = 3
BACKOFF_S = 0.5
TIMEOUT_S = 10.0

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


def render_template(
    text: str, params: Mapping[str, Any], report: Report | Mapping[str, Any], inventory: Mapping[str, Any] | None = None
) -> str:
    """A notification template over params, the inventory's `all` variables (`inventory.NAME`) and the run's
    status, runbook, run_id and severity, in a sandbox."""
    if "{{" not in text and "{%" not in text:
        return text
    report = as_report(report)
    return _SANDBOX.from_string(text).render(
        params=dict(params),
        inventory=dict(inventory or {}),
        status=report.status.value,
        run_id=report.run_id,
        severity=report.severity,
        runbook=report.runbook.name,
    )


def fires(notification: Any, status: str) -> bool:
    """Whether a notification's `on` list covers this run status."""
    on = _field(notification, "on") or DEFAULT_ON
    return OUTCOME_FOR_STATUS.get(status, status) in tuple(on)


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


def default_subject(report: Report | Mapping[str, Any]) -> str:
    report = as_report(report)
    status = report.status.value.upper().replace("_", " ")
    return f"[runbook] {status}: {report.runbook.name} ({report.severity})"


@dataclass(frozen=True)
class _Delivery:
    """What the notification templates read (the run's real params, the inventory's `all` variables) and how
    hard a sender tries (timeout, attempts, backoff)."""

    params: Mapping[str, Any]
    inventory: Mapping[str, Any]
    retry: tuple[float, int, float]

    def render(self, text: str, report: Report) -> str:
        return render_template(text, self.params, report, self.inventory)


@dataclass(frozen=True)
class _AlsoHiding:
    """The run's redactor, and the secret-looking values of the inventory a template may have read."""

    run: RedactorLike
    inventory: Redactor

    def text(self, value: str) -> str:
        return self.inventory.text(self.run.text(value))

    def scrub(self, value: Any) -> Any:
        return self.inventory.scrub(self.run.scrub(value))


_SECRET_NAME = re.compile(r"webhook|token|secret|password|passwd|key", re.IGNORECASE)


def _hiding_inventory(redactor: RedactorLike, inventory: Mapping[str, Any]) -> RedactorLike:
    values = [str(v) for k, v in inventory.items() if _SECRET_NAME.search(k) and isinstance(v, str) and v]
    return _AlsoHiding(redactor, Redactor(values)) if values else redactor


class _Off(Exception):
    """The notification's target renders empty (a param or inventory variable left unset): it is not sent."""


def _webhook(
    notification: Any, report: Report, values: _Delivery, redactor: RedactorLike, report_path: str
) -> tuple[str, tuple[bool, str, int]]:
    url = values.render(str(_field(notification, "url", "") or ""), report).strip()
    if not url:
        raise _Off
    channel = _field(notification, "channel")
    channel_text = redactor.text(values.render(str(channel), report)) if channel else None
    payload = redactor.scrub(webhook_payload(report, report_path, channel_text))
    timeout_s, attempts, backoff_s = values.retry
    sent = post_webhook(url, payload, timeout_s=timeout_s, attempts=attempts, backoff_s=backoff_s)
    return redactor.text(url), sent


def _email(
    notification: Any, report: Report, values: _Delivery, redactor: RedactorLike, report_path: str
) -> tuple[str, tuple[bool, str, int]]:
    raw_to = _field(notification, "to") or []
    rendered = [values.render(str(r), report) for r in ([raw_to] if isinstance(raw_to, str) else raw_to)]
    recipients = [r.strip() for text in rendered for r in text.split(",") if r.strip()]
    if not recipients:
        raise _Off
    subject_template = _field(notification, "subject")
    subject = values.render(str(subject_template), report) if subject_template else default_subject(report)
    subject = " ".join(redactor.text(subject).split())  # no header injection through newlines
    body = redactor.text(render_markdown(report))
    if report_path:
        body += f"\nReport: {report_path}\n"
    sent = send_email(
        recipients, subject, body, timeout_s=values.retry[0], attempts=values.retry[1], backoff_s=values.retry[2]
    )
    return redactor.text(", ".join(recipients)), sent


_SENDERS = {"webhook": _webhook, "email": _email}


def send_one(
    notification: Any,
    report: Report | Mapping[str, Any],
    params: Mapping[str, Any],
    redactor: RedactorLike,
    *,
    report_path: str = "",
    inventory: Mapping[str, Any] | None = None,
    timeout_s: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> NotificationResult | None:
    """Deliver one notification now (whatever the outcome); None when its target renders empty (off); never
    raises."""
    kind = str(_field(notification, "kind", "") or "")
    target = ""
    redactor = _hiding_inventory(redactor, inventory or {})
    try:
        safe_report = as_report(report).scrubbed(redactor.scrub)
        sender = _SENDERS.get(kind)
        if sender is None:
            ok, error, tries = False, f"unknown notification kind {kind!r}", 0
        else:
            values = _Delivery(params, inventory or {}, (timeout_s, attempts, backoff_s))
            target, (ok, error, tries) = sender(notification, safe_report, values, redactor, report_path)
    except _Off:
        return None
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
    report: Report | Mapping[str, Any],
    params: Mapping[str, Any],
    redactor: RedactorLike,
    *,
    report_path: str | Path = "",
    inventory: Mapping[str, Any] | None = None,
    timeout_s: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> list[NotificationResult]:
    """Send every notification whose `on` covers the report's status and whose target is set; one result per
    notification sent."""
    report = as_report(report)
    sent = (
        send_one(
            notification,
            report,
            params,
            redactor,
            report_path=str(report_path),
            inventory=inventory,
            timeout_s=timeout_s,
            attempts=attempts,
            backoff_s=backoff_s,
        )
        for notification in notifications
        if _fires_safely(notification, report.status)
    )
    return [result for result in sent if result is not None]


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
