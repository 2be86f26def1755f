"""Notifications against real local receivers: an HTTP webhook server and an aiosmtpd SMTP server."""

from __future__ import annotations

import contextlib
import email
import json
import socket
import threading
import time
from collections.abc import Iterator
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runner.language.model import Notification
from runner.language.params import SECRET_MASK
from runner.records import notify
from runner.records.redact import Redactor

CANARY = "CANARY-s3cr3t-77aa"


def make_report(status: str = "rolled_back") -> dict[str, Any]:
    return {
        "run_id": "backend-rollback-20260115T100000Z-abc123",
        "runbook": {"name": "backend-rollback", "title": "Roll back", "file": "x.yml", "sha256": "", "owner": ""},
        "severity": "SEV1",
        "status": status,
        "status_detail": "step 'swap' failed on app1; on_failure restored the service and verified it",
        "check_mode": False,
        "operator": "oncall@control",
        "trigger": "INC-7",
        "started": "2026-01-15T10:00:00.000+00:00",
        "ended": "2026-01-15T10:01:05.000+00:00",
        "duration_s": 65.0,
        "budget_s": 300,
        "budget_from": "runbook",
        "budget_met": True,
        "severity_target_s": 900,
        "severity_target_met": True,
        "failure_detected": "2026-01-15T10:00:30.000+00:00",
        "params": {"service": "backend", "token": SECRET_MASK},
        "hosts": {
            "app1": {"version_before": "backend:v2", "version_after": "backend:v1"},
            "app2": {"version_before": "backend:v1", "version_after": "backend:v1"},
        },
        "steps": [
            {
                "id": "swap",
                "phase": "main",
                "host": "app1",
                "status": "failed",
                "duration_s": 3.0,
                "changed": True,
                "message": "health 500",
                "started": "2026-01-15T10:00:27.000+00:00",
                "ended": "2026-01-15T10:00:30.000+00:00",
            }
        ],
        "outputs": {},
        "on_failure": {
            "ran": True,
            "started": "2026-01-15T10:00:31.000+00:00",
            "ended": "2026-01-15T10:01:05.000+00:00",
            "duration_s": 34.0,
            "status": "succeeded",
            "verified": True,
            "restored": ["app1: undo → backend:v1"],
        },
        "backups": [],
        "verification": [],
        "data_check": "no database step in this run",
        "notifications": [],
        "inventory": "inv.yml",
        "runner_version": "0.1.0",
    }


PARAMS = {"service": "backend", "token": CANARY, "hook_path": "hooks/T000/B000"}
REDACTOR = Redactor([CANARY])


class Receiver:
    """A local webhook endpoint answering with the given status codes in turn (then 200)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body.decode("utf-8")}
                )
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"error")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def webhook(url: str, on: tuple[str, ...] = ("failure", "rolled_back", "success"), **extra: Any) -> Notification:
    return Notification(kind="webhook", on=on, target={"url": url, **extra})


def test_webhook_sends_slack_compatible_json() -> None:
    with Receiver() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/{{{{ params.hook_path }}}}?t={{{{ params.token }}}}"
        results = notify.send_all(
            [webhook(url, channel="#backend-emergency")],
            make_report(),
            PARAMS,
            REDACTOR,
            report_path="/state/runs/x/report.md",
        )
    assert results == [
        {
            "kind": "webhook",
            "target": f"http://127.0.0.1:{receiver.port}/hooks/T000/B000?t={SECRET_MASK}",
            "ok": True,
            "error": "",
            "attempts": 1,
        }
    ]
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    # the secret is used to reach the endpoint, never written into what is sent or recorded
    assert request["path"] == f"/hooks/T000/B000?t={CANARY}"
    assert request["headers"]["Content-Type"].startswith("application/json")
    body = json.loads(request["body"])
    assert CANARY not in request["body"]
    assert body["channel"] == "#backend-emergency"
    assert "backend-rollback" in body["text"] and "rolled_back" in body["text"] and "SEV1" in body["text"]
    assert isinstance(body["blocks"], list) and body["blocks"][0]["type"] == "header"
    fields = " ".join(f["text"] for b in body["blocks"] if b["type"] == "section" for f in b.get("fields", []))
    for value in ("*Status*\nrolled_back", "*Runbook*\n`backend-rollback`", "*Severity*\nSEV1", "*Duration*\n1m05s"):
        assert value in fields
    versions = next(b["text"]["text"] for b in body["blocks"] if b.get("text", {}).get("text", "").startswith("*Ver"))
    assert "app1: backend:v2 → backend:v1" in versions
    assert "/state/runs/x/report.md" in json.dumps(body["blocks"][-1])
    attachment = body["attachments"][0]
    assert attachment["color"] and {f["title"] for f in attachment["fields"]} >= {"Status", "Runbook", "Report"}


def test_webhook_retries_on_5xx() -> None:
    with Receiver([500, 500]) as receiver:
        started = time.monotonic()
        results = notify.send_all(
            [webhook(f"http://127.0.0.1:{receiver.port}/hook")], make_report(), PARAMS, REDACTOR, backoff_s=0.05
        )
        elapsed = time.monotonic() - started
    assert results[0]["ok"] is True and results[0]["attempts"] == 3 and results[0]["error"] == ""
    assert len(receiver.requests) == 3
    assert elapsed < 5


def test_webhook_gives_up_after_three_attempts() -> None:
    with Receiver([503, 503, 503, 503]) as receiver:
        results = notify.send_all(
            [webhook(f"http://127.0.0.1:{receiver.port}/hook")], make_report(), PARAMS, REDACTOR, backoff_s=0.01
        )
    assert results[0]["ok"] is False and results[0]["attempts"] == 3
    assert "503" in results[0]["error"]
    assert len(receiver.requests) == 3


def test_webhook_4xx_is_not_retried() -> None:
    with Receiver([404]) as receiver:
        results = notify.send_all(
            [webhook(f"http://127.0.0.1:{receiver.port}/hook")], make_report(), PARAMS, REDACTOR, backoff_s=0.01
        )
    assert results[0]["ok"] is False and results[0]["attempts"] == 1 and "404" in results[0]["error"]


def test_unreachable_webhook_fails_quickly_and_never_raises() -> None:
    started = time.monotonic()
    results = notify.send_all(
        [webhook("http://127.0.0.1:1/hook?t={{ params.token }}")], make_report(), PARAMS, REDACTOR
    )
    elapsed = time.monotonic() - started
    assert results[0]["ok"] is False
    assert results[0]["attempts"] == 3
    assert results[0]["error"].startswith("cannot reach the webhook")
    assert CANARY not in json.dumps(results)
    assert results[0]["target"] == f"http://127.0.0.1:1/hook?t={SECRET_MASK}"
    assert elapsed < 5  # default backoff: 0.5s + 1s


def test_bad_templates_and_kinds_never_raise() -> None:
    results = notify.send_all(
        [
            webhook("http://127.0.0.1:1/{{ params.missing }}"),
            webhook("http://127.0.0.1:1/{{ ''.__class__.__mro__ }}"),
            {"kind": "pager", "on": ["rolled_back"], "number": "1"},
            webhook("ftp://example.invalid/"),
        ],
        make_report(),
        PARAMS,
        REDACTOR,
    )
    assert [r["ok"] for r in results] == [False, False, False, False]
    assert results[0]["error"].startswith("template error")
    assert "unknown notification kind" in results[2]["error"]
    assert "http" in results[3]["error"] and results[3]["attempts"] == 0


def test_fires_only_for_listed_outcomes() -> None:
    with Receiver() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/hook"
        notes = [
            webhook(url, on=("success",)),
            webhook(url, on=("failure",)),
            {"kind": "webhook", "url": url, "on": ["rolled_back", "interrupted"]},
            {"kind": "webhook", "url": url},  # default on: failure, rolled_back
        ]
        rolled = notify.send_all(notes, make_report("rolled_back"), PARAMS, REDACTOR)
        succeeded = notify.send_all(notes, make_report("succeeded"), PARAMS, REDACTOR)
        failed = notify.send_all(notes, make_report("failed"), PARAMS, REDACTOR)
    assert (len(rolled), len(succeeded), len(failed)) == (2, 1, 2)
    assert len(receiver.requests) == 5


# ---------------------------------------------------------------- email


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": bytes(envelope.content)}
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Inbox]:
    controller_module = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is in the dev extra")
    inbox = _Inbox()
    port = _free_port()
    controller = controller_module.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("RUNBOOK_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("RUNBOOK_SMTP_PORT", str(port))
    monkeypatch.setenv("RUNBOOK_SMTP_FROM", "runbook@control.example")
    try:
        yield inbox
    finally:
        controller.stop()


def test_email_is_sent_with_the_markdown_report(smtp: _Inbox) -> None:
    note = Notification(
        kind="email",
        on=("failure", "rolled_back"),
        target={
            "to": ["oncall@example.org", "lead@example.org"],
            "subject": "{{ status }}: {{ runbook }} for {{ params.service }} ({{ params.token }})",
        },
    )
    results = notify.send_all([note], make_report(), PARAMS, REDACTOR, report_path="/state/runs/x/report.md")
    assert results == [
        {"kind": "email", "target": "oncall@example.org, lead@example.org", "ok": True, "error": "", "attempts": 1}
    ]
    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received["from"] == "runbook@control.example"
    assert received["to"] == ["oncall@example.org", "lead@example.org"]
    assert CANARY.encode() not in received["data"]
    message = email.message_from_bytes(received["data"], policy=policy.default)
    assert message["Subject"] == f"rolled_back: backend-rollback for backend ({SECRET_MASK})"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "# Rollback report: backend-rollback — ROLLED_BACK" in text
    assert "## Recovery actions" in text and "**Version rolled back to**: backend:v1" in text
    assert "Report: /state/runs/x/report.md" in text
    assert CANARY not in text


def test_email_default_subject_and_status_filter(smtp: _Inbox) -> None:
    note = {"kind": "email", "to": ["oncall@example.org"], "on": ["failure"]}
    assert notify.send_all([note], make_report("rolled_back"), PARAMS, REDACTOR) == []
    results = notify.send_all([note], make_report("failed"), PARAMS, REDACTOR)
    assert results[0]["ok"] is True
    message = email.message_from_bytes(smtp.messages[0]["data"], policy=policy.default)
    assert message["Subject"] == "[runbook] FAILED: backend-rollback (SEV1)"


def test_email_to_a_dead_smtp_server_fails_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("RUNBOOK_SMTP_PORT", str(_free_port()))
    note = {"kind": "email", "to": ["oncall@example.org"], "on": ["rolled_back"]}
    results = notify.send_all([note], make_report(), PARAMS, REDACTOR, backoff_s=0.01)
    assert results[0]["ok"] is False and results[0]["attempts"] == 3
    assert "cannot reach SMTP 127.0.0.1" in results[0]["error"]


def test_subject_newlines_cannot_inject_headers(smtp: _Inbox) -> None:
    note = {
        "kind": "email",
        "to": ["oncall@example.org"],
        "subject": "hi\r\nBcc: evil@example.org {{ params.service }}",
    }
    results = notify.send_all([note], make_report(), PARAMS, REDACTOR)
    assert results[0]["ok"] is True
    message = email.message_from_bytes(smtp.messages[0]["data"], policy=policy.default)
    assert message["Bcc"] is None
    assert smtp.messages[0]["to"] == ["oncall@example.org"]


def _strings(value: Any, skip_plain_text: bool = True) -> list[str]:
    """Every text of a Slack payload Slack reads as mrkdwn (plain_text blocks show their text literally)."""
    if isinstance(value, dict):
        if skip_plain_text and value.get("type") == "plain_text":
            return []
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def test_webhook_payload_escapes_what_hosts_and_operators_wrote() -> None:
    report = make_report()
    report["status_detail"] = "step 'swap' failed on app1: <!channel> see <http://evil.example|the runbook> & go"
    report["operator"] = "<@U0123>@control"
    report["hosts"]["app1"] = {"version_before": "<!here>", "version_after": "v1 > v0"}
    with Receiver() as receiver:
        results = notify.send_all(
            [webhook(f"http://127.0.0.1:{receiver.port}/hook")], report, PARAMS, REDACTOR,
            report_path="/state/runs/<!everyone>/report.md",
        )
    assert results[0]["ok"] is True
    body = json.loads(receiver.requests[0]["body"])
    texts = _strings(body)
    assert not [text for text in texts if "<" in text or ">" in text]
    assert any("&lt;!channel&gt; see &lt;http://evil.example|the runbook&gt; &amp; go" in t for t in texts)
    assert any("&lt;@U0123&gt;@control" in t for t in texts)
    assert any("app1: &lt;!here&gt; → v1 &gt; v0" in t for t in texts)
    assert any("/state/runs/&lt;!everyone&gt;/report.md" in t for t in texts)
    assert "*Status*\nrolled_back" in texts and "*Runbook*\n`backend-rollback`" in texts  # the product's own markup


SHIPPED_WEBHOOK = "{{ params.notify_webhook or inventory.runbook_notify_webhook | default('') }}"
SHIPPED_EMAIL = "{{ params.notify_email or inventory.runbook_notify_email | default('') }}"


def test_a_target_left_empty_in_the_params_and_the_inventory_sends_nothing() -> None:
    email = Notification(kind="email", on=("rolled_back",), target={"to": [SHIPPED_EMAIL]})
    shipped = [webhook(SHIPPED_WEBHOOK), email]
    params = {"notify_webhook": "", "notify_email": ""}
    assert notify.send_all(shipped, make_report(), params, REDACTOR, inventory={}) == []
    assert notify.send_all(shipped, make_report(), params, REDACTOR) == []


def test_the_inventory_gives_the_webhook_and_its_secret_path_stays_out_of_the_record() -> None:
    with Receiver() as receiver:
        hook = f"http://127.0.0.1:{receiver.port}/services/T000/B000/XYZsecretpath"
        results = notify.send_all([webhook(SHIPPED_WEBHOOK)], make_report(), {"notify_webhook": ""}, REDACTOR,
                                  inventory={"runbook_notify_webhook": hook, "lab_environment": "lab"})
        assert [r["path"] for r in receiver.requests] == ["/services/T000/B000/XYZsecretpath"]
    assert results == [{"kind": "webhook", "target": SECRET_MASK, "ok": True, "error": "", "attempts": 1}]
    assert "XYZsecretpath" not in json.dumps(results)
