"""backups status freshness: offsite states, default max age from schedules, saved status -> metrics gauges."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.engine import backup_freshness, backup_status, schedules


def _state(**extra: object) -> backup_status.BackupState:
    base = dict(
        host="db", directory="/d", database="shop", kind="postgres", backups=1, newest="b1", newest_ok=True,
        newest_problem="", verified="b1", verified_finished="2026-01-01T00:00:00+00:00", verified_size=10,
        age_s=100.0,
    )
    base.update(extra)
    return backup_status.BackupState(**base)  # type: ignore[arg-type]


def test_offsite_states() -> None:
    record = {"host": "backup", "path": "/o/b1.dump", "sha256": "aa", "verified_at": "x"}
    assert backup_freshness.offsite_state(_state(), {}) == "missing"
    assert backup_freshness.offsite_state(_state(offsite_record=record), {"backup": {"/o/b1.dump": "aa"}}) == "verified"
    assert backup_freshness.offsite_state(_state(offsite_record=record), {"backup": {"/o/b1.dump": "bb"}}) == "corrupt"
    assert backup_freshness.offsite_state(_state(offsite_record=record), {"backup": {"/o/b1.dump": ""}}) == "missing"


def test_states_from_reads_compression_and_offsite() -> None:
    entry = {"dir": "/d", "database": "shop", "backups": 1, "newest": {"name": "b1", "ok": True},
             "verified": {"name": "b1", "finished": "2026-01-01T00:00:00+00:00", "size": 5, "compression": "zstd",
                          "offsite": {"host": "backup", "path": "/p"}}}
    (state,) = backup_status.states_from("db", [entry], datetime(2026, 1, 2, tzinfo=UTC))
    assert (state.compression, state.offsite_record, state.age_s) == ("zstd", {"host": "backup", "path": "/p"}, 86400)


def test_max_age_from_backup_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_CRON_DIR", str(tmp_path / "cron.d"))
    schedules.add(schedules.Schedule("pg", "/r/postgres-backup.yml", "/i", "0 */6 * * *", str(tmp_path),
                                     ("database=shop",), "/bin/runbook"))
    schedules.add(schedules.Schedule("other", "/r/cache-flush.yml", "/i", "* * * * *", str(tmp_path),
                                     ("database=shop",), "/bin/runbook"))
    assert backup_freshness.schedule_max_ages(tmp_path) == {"shop": 12 * 3600}
    report = backup_status.BackupsReport(databases=[_state(age_s=13 * 3600.0)], max_age_by_database={"shop": 43200})
    assert not report.ok
    assert "more than" in report.to_dict()["databases"][0]["problem"]
    assert "shop" in backup_freshness.stale_message(report)


def test_saved_status_feeds_metrics(tmp_path: Path) -> None:
    report = backup_status.BackupsReport(databases=[_state(offsite="verified"), _state(database="crm", age_s=None)])
    backup_freshness.save(tmp_path, report)
    lines = backup_freshness.prometheus_lines(backup_freshness.load_saved(tmp_path))
    age = [line for line in lines if line.startswith("runbook_backup_age_seconds{")]
    assert len(age) == 1 and age[0].startswith('runbook_backup_age_seconds{host="db",database="shop"} 10')
    assert 'runbook_backup_offsite_verified{host="db",database="shop"} 1' in lines
    assert 'runbook_backup_offsite_verified{host="db",database="crm"} 0' in lines
    assert backup_freshness.prometheus_lines(None) == []


def test_unknown_notify_kind_is_reported() -> None:
    report = backup_status.BackupsReport(databases=[_state(age_s=None, verified="")])
    assert backup_freshness.notify(["pager:x"], report) == [
        ("pager:x", False, "unknown notification kind 'pager' (webhook:URL or email:ADDRESS)")
    ]
