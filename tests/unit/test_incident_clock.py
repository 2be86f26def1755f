"""The incident's clock: when it was detected (--detected-at, a detected_at param, a rollback runbook's start), the
time to restore the report keeps, and MTTR / time against the severity target in `runbook metrics`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_history_metrics import record, report, ts

from runner.engine.runflow import RunOptions, detected_at, moment_text
from runner.errors import InvalidInput
from runner.language.durations import parse_moment
from runner.language.loader import load_runbook
from runner.language.params import resolve as resolve_params
from runner.records import metrics
from runner.records.build import time_to_restore
from runner.records.model import Rollback, RollbackStatus, RunStatus

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


def test_a_moment_is_a_time_or_a_duration_ago_and_never_ahead() -> None:
    assert parse_moment("2026-12-02T09:41:00Z", NOW) == datetime(2026, 12, 2, 9, 41, tzinfo=UTC)
    assert parse_moment("2026-12-02T11:41:00+02:00", NOW) == datetime(2026, 12, 2, 9, 41, tzinfo=UTC)
    assert parse_moment("2026-12-02T09:41:00", NOW) == datetime(2026, 12, 2, 9, 41, tzinfo=UTC)  # no offset: UTC
    assert parse_moment("12m", NOW) == NOW - timedelta(minutes=12)
    assert parse_moment("2026-12-02T10:00:30Z", NOW) == NOW + timedelta(seconds=30)  # clocks differ a little
    with pytest.raises(ValueError, match="in the future"):
        parse_moment("2026-12-02T11:00:00Z", NOW)
    with pytest.raises(ValueError, match="neither a time"):
        parse_moment("yesterday", NOW)
    with pytest.raises(InvalidInput, match=r"^--detected-at 'soon' is neither"):
        moment_text("soon", "--detected-at")


def _options(detected: str | None = None) -> RunOptions:
    return RunOptions(Path("inv"), [ROOT / "roles"], Path("state"), detected_at=detected)


def test_the_clock_starts_at_the_detection_the_operator_gives_else_a_rollback_runbooks_start() -> None:
    rollback = load_runbook(ROOT / "runbooks" / "backend-image-rollback.yml", [ROOT / "roles"])
    deploy = load_runbook(ROOT / "runbooks" / "deploy.yml", [ROOT / "roles"])
    started, failed = "2026-12-02T10:00:00.000+00:00", "2026-12-02T10:01:00.000+00:00"
    given = "2026-12-02T09:41:00.000+00:00"
    none = resolve_params(rollback, {})
    assert detected_at(_options(given), rollback, none, started, None) == given
    assert detected_at(_options(), rollback, none, started, failed) == started  # a person started it: broken
    assert detected_at(_options(), deploy, resolve_params(deploy, {"version": "v2"}), started, failed) == failed
    assert detected_at(_options(), deploy, resolve_params(deploy, {"version": "v2"}), started, None) is None


def test_time_to_restore_ends_when_the_service_is_restored() -> None:
    detected = "2026-12-02T09:41:00.000+00:00"
    ended = "2026-12-02T09:52:30.000+00:00"
    not_run = Rollback(ran=False, status=RollbackStatus.NOT_RUN)
    assert time_to_restore(detected, RunStatus.SUCCEEDED, ended, not_run) == 690.0
    rolled = Rollback(ran=True, status=RollbackStatus.SUCCEEDED, started="2026-12-02T09:50:00.000+00:00",
                      ended="2026-12-02T09:51:00.000+00:00", verified=True)
    assert time_to_restore(detected, RunStatus.ROLLED_BACK, ended, rolled) == 600.0
    assert time_to_restore(detected, RunStatus.FAILED, ended, not_run) is None  # nothing restored
    assert time_to_restore(None, RunStatus.SUCCEEDED, ended, not_run) is None


def test_incidents_a_run_restored_itself_count_in_mttr_and_against_the_target(tmp_path: Path) -> None:
    # a SEV1 rollback runbook: detected 5 minutes before the run, 2 minutes of run -> 7m (target 15m)
    quick = report("r1", "backend-image-rollback", start=300, duration=120)
    quick["failure_detected"] = ts(0)
    slow = report("r2", "backend-image-rollback", start=4000, duration=120)
    slow["failure_detected"] = ts(4000 - 1800)  # found 30 minutes before: 32m, over the target
    record(tmp_path, quick)
    record(tmp_path, slow)
    record(tmp_path, report("r3", "backend-image-rollback", start=9000))  # no detection: not an incident
    m = metrics.compute(tmp_path).runbooks["backend-image-rollback"]
    assert (m.restores, m.restores_within_target, m.rollbacks) == (2, 1, 0)
    assert m.mttr_s == pytest.approx((420 + 1920) / 2)
    text = metrics.format_text(metrics.compute(tmp_path))
    assert "1/2" in text.splitlines()[1]
    assert "runbook_restores_within_target_total" in metrics.format_prometheus(metrics.compute(tmp_path))
