"""`runbook watch` against the lab (issue 16 item 4): app1's backend sampled once from the control node - its
/health error rate is 0 (exit 0), and a p50 latency that must not be under one second always breaches (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from labtools import INVENTORY, ROOT, runbook_cli

from runner import lab as lab_module

pytestmark = pytest.mark.lab

FIXTURE = str(ROOT / "tests" / "fixtures" / "watch" / "watch-once.yml")


def test_a_healthy_backend_passes_its_error_rate_check(lab: lab_module.LabStatus, tmp_path: Path) -> None:
    proc = runbook_cli(tmp_path, "watch", FIXTURE, "errors", "-i", INVENTORY, "-p", "hosts=app1", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answer = json.loads(proc.stdout)
    (check,) = answer["checks"]
    assert (check["host"], check["name"], check["value"], check["verdict"]) == ("app1", "error rate", 0.0, "healthy")
    assert answer["ok"] is True and answer["host_errors"] == {}


def test_a_latency_threshold_that_always_holds_breaches(lab: lab_module.LabStatus, tmp_path: Path) -> None:
    proc = runbook_cli(tmp_path, "watch", FIXTURE, "latency", "-i", INVENTORY, "-p", "hosts=app1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "p50 latency" in line)
    assert line.split()[0] == "app1" and line.rstrip().endswith("BREACH") and "< 1" in line
    assert proc.stdout.splitlines()[-1] == "breach: a check's fail_if holds now"


def test_a_step_that_is_no_watch_is_refused(lab: lab_module.LabStatus, tmp_path: Path) -> None:
    proc = runbook_cli(tmp_path, "watch", FIXTURE, "check", "-i", INVENTORY, "-p", "hosts=app1")
    assert proc.returncode == 2 and "uses verify, not watch" in proc.stderr
