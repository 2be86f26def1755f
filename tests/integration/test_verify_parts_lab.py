"""verify's PostgreSQL, log and latency checks in the lab, run as an operator runs a runbook: pg_isready and SQL
assertions on the db host (read-only, shop is never written), a failing assertion named in the report, lines
counted in app1's backend container logs and in a log file, and /health's p95."""

from __future__ import annotations

import contextlib
import datetime
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from labtools import ROOT, host_sh, latest_report, run, step_outputs

pytestmark = pytest.mark.lab

FIXTURES = ROOT / "tests" / "fixtures" / "lab_verify"
APP1 = "http://127.0.10.11:8080"
LOG_DIR = "/tmp/runbook-verify-lab"


def get(url: str) -> None:
    with contextlib.suppress(urllib.error.HTTPError):  # a 404 is logged like any other request
        urllib.request.urlopen(url, timeout=5).read()


def failure(state: Path, step: str) -> str:
    """The message of the latest run's failed step."""
    report = latest_report(state)
    found = next(s for s in report["steps"] if s["id"] == step)
    assert found["status"] == "failed", found
    return str(found["message"])


@pytest.fixture
def log_file() -> Iterator[str]:
    """A log file on app1: 3 ERROR lines of the last minutes (one with a continuation), 2 of an hour ago."""
    now = datetime.datetime.now(datetime.UTC)

    def at(minutes_ago: float) -> str:
        return (now - datetime.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    lines = [
        f"{at(60)} ERROR old failure",
        f"{at(59)} FATAL old crash",
        f"{at(5)} INFO started",
        f"{at(4)} ERROR payment failed",
        "    caused by: ERROR upstream timeout",
        f"{at(1)} panic: nil map",
        f"{at(0.5)} INFO ok",
    ]
    path = f"{LOG_DIR}/app.log"
    host_sh("app1", f"mkdir -p {LOG_DIR} && cat > {path}", stdin="\n".join(lines) + "\n")
    yield path
    host_sh("app1", f"rm -rf {LOG_DIR}")


def test_postgres_is_ready_and_its_assertions_pass(lab: object, tmp_path: Path) -> None:
    result = run(tmp_path, str(FIXTURES / "database.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    checks = step_outputs(tmp_path, "data")["checks"]
    assert [(c["name"], c["ok"]) for c in checks] == [
        ("pg_isready shop", True),
        ("orders exist", True),
        ("wallets are not negative", True),
    ]
    assert checks[0]["detail"] == "accepting connections"
    assert checks[1]["detail"].startswith("value ") and int(checks[1]["detail"].split()[1]) >= 1
    assert checks[2]["detail"] == "value 0"
    assert "lab" not in [c["detail"] for c in checks]  # the password is in no result


def test_a_failing_assertion_fails_the_run_naming_it(lab: object, tmp_path: Path) -> None:
    result = run(tmp_path, str(FIXTURES / "database.yml"), "-p", "impossible=true")
    assert result.returncode != 0
    message = failure(tmp_path, "impossible")  # a failed step publishes no outputs: its message names the check
    assert message.startswith("verification failed on db: a million orders: value ")
    assert message.endswith(", expected at least 1000000")


def test_log_lines_and_latency_on_app1(lab: object, tmp_path: Path, log_file: str) -> None:
    marker = "error-" + uuid.uuid4().hex[:12]  # lower case: no other check's default ERROR pattern counts these
    for index in range(3):
        get(f"{APP1}/{marker}/{index}")
    time.sleep(1)
    result = run(tmp_path, str(FIXTURES / "logs-latency.yml"), "-p", f"marker={marker}", "-p", f"log_file={log_file}")
    assert result.returncode == 0, result.stdout + result.stderr
    logs = {c["name"]: c for c in step_outputs(tmp_path, "logs")["checks"]}
    assert logs["marked lines"]["ok"] is True
    assert logs["marked lines"]["detail"].startswith("3 lines match")
    assert "in lines logged in the last 10 minutes of container backend" in logs["marked lines"]["detail"]
    assert logs["file errors"]["ok"] is True
    assert logs["file errors"]["detail"] == (
        f"3 lines match 'ERROR|FATAL|panic' in lines timed in the last 10 minutes of file {log_file}"
    )
    latency = step_outputs(tmp_path, "latency")["checks"]
    assert [(c["name"], c["ok"]) for c in latency] == [("health p95", True)]
    assert latency[0]["detail"].startswith("median ") and latency[0]["detail"].endswith("over 10 calls")

    planned = run(tmp_path, str(FIXTURES / "logs-latency.yml"), "--check", "-p", f"marker={marker}",
                  "-p", f"log_file={log_file}")  # fmt: skip
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert step_outputs(tmp_path, "logs")["checks"][1]["detail"] == logs["file errors"]["detail"]  # reads run
    detail = step_outputs(tmp_path, "latency")["checks"][0]["detail"]
    assert detail == f"would call GET {APP1}/health 10 times (p95 <= 1000 ms)"  # no request sent

    for index in range(3, 12):  # 12 marked lines now: more than 10 fails, naming the count
        get(f"{APP1}/{marker}/{index}")
    time.sleep(1)
    burst = run(tmp_path, str(FIXTURES / "logs-latency.yml"), "-p", f"marker={marker}", "-p", f"log_file={log_file}")
    assert burst.returncode != 0
    assert failure(tmp_path, "logs") == (
        f"verification failed on app1: marked lines: 12 lines match '{marker}' in lines logged in the last 10"
        " minutes of container backend, more than 10"
    )


def test_http_call_publishes_the_answer_and_never_shows_its_secrets(lab: object, tmp_path: Path) -> None:
    token, api_key = "lab-token-" + uuid.uuid4().hex, "lab-api-key-5e0c27d1"
    result = run(tmp_path, str(FIXTURES / "http-call.yml"), "-p", f"token={token}")
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = step_outputs(tmp_path, "call")
    assert (outputs["ok"], outputs["status"], outputs["attempts"], outputs["method"]) == (True, 200, 1, "GET")
    assert outputs["json"]["status"] == "ok" and outputs["url"] == f"{APP1}/health"

    refused = run(tmp_path, str(FIXTURES / "http-call.yml"), "-p", f"token={token}", "-p", "expect=201")
    assert refused.returncode != 0
    assert failure(tmp_path, "call") == f"GET {APP1}/health: status 200, expected 201 (after 1 attempt)"  # not retried
    records = [p.read_text() for p in (tmp_path / "runs").glob("*/*") if p.suffix in (".json", ".jsonl", ".md")]
    for text in [result.stdout, result.stderr, refused.stdout, refused.stderr, *records]:
        assert token not in text and api_key not in text
