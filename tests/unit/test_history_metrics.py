"""Run history (SQLite) and the recovery metrics computed from it, on a synthetic history."""

from __future__ import annotations

import json
import math
import multiprocessing
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.records import history, metrics
from runner.records.datacheck import DataCheck, HostRows, TableRows

T0 = datetime(2026, 1, 15, 10, 0, 0, tzinfo=UTC)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def report(
    run_id: str,
    runbook: str = "backend-rollback",
    status: str = "succeeded",
    *,
    start: float = 0.0,
    duration: float = 60.0,
    severity: str = "SEV1",
    failure_at: float | None = None,
    rollback: tuple[float, float] | None = None,
    verified: bool = True,
    data_check: str = "no database step in this run",
    data_check_detail: list[dict[str, Any]] | None = None,
    budget_s: float = 300.0,
    check_mode: bool = False,
) -> dict[str, Any]:
    on_failure: dict[str, Any] = {"ran": False, "status": "not needed", "duration_s": 0.0, "restored": []}
    if rollback is not None:
        on_failure = {
            "ran": True,
            "started": ts(start + rollback[0]),
            "ended": ts(start + rollback[1]),
            "duration_s": rollback[1] - rollback[0],
            "status": "succeeded" if verified else "failed",
            "verified": verified,
            "restored": ["app1: undo → v1"],
        }
    return {
        "run_id": run_id,
        "runbook": {"name": runbook, "title": "", "file": "x.yml", "sha256": "", "owner": ""},
        "severity": severity,
        "status": status,
        "status_detail": f"{status} detail",
        "check_mode": check_mode,
        "operator": "oncall@control",
        "trigger": "INC-1",
        "started": ts(start),
        "ended": ts(start + duration),
        "duration_s": duration,
        "budget_s": budget_s,
        "budget_from": "runbook",
        "budget_met": duration <= budget_s,
        "severity_target_s": 900.0,
        "severity_target_met": duration <= 900,
        "failure_detected": ts(start + failure_at) if failure_at is not None else None,
        "params": {"service": "backend", "token": "********"},
        "hosts": {"app1": {"version_before": "v2", "version_after": "v1"}},
        "steps": [
            {
                "id": "swap",
                "phase": "main",
                "host": "app1",
                "status": "failed" if failure_at is not None else "succeeded",
                "duration_s": 3.0,
                "changed": True,
                "message": "boom" if failure_at is not None else "",
                "started": ts(start + 1),
                "ended": ts(start + 4),
            },
            {
                "id": "verify",
                "phase": "on_failure",
                "host": "app1",
                "status": "succeeded",
                "duration_s": 1.0,
                "changed": False,
                "message": "",
                "started": ts(start + 5),
                "ended": ts(start + 6),
            },
        ],
        "on_failure": on_failure,
        "backups": [],
        "verification": [],
        "data_check": data_check,
        "data_check_detail": data_check_detail or [],
        "notifications": [],
    }


def db_rows(before: int, after: int) -> list[dict[str, Any]]:
    """data_check_detail of a restore on host db that counted the orders table before and after."""
    table = {"table": "orders", "rows_before": before, "rows_after": after, "rows_lost": max(before - after, 0)}
    return [{"step": "restore", "host": "db", "tables": [table]}]


def record(state: Path, rep: dict[str, Any]) -> None:
    history.record_start(
        state,
        rep["run_id"],
        rep["runbook"]["name"],
        rep["severity"],
        rep["started"],
        rep["params"],
        rep["operator"],
        check_mode=rep["check_mode"],
    )
    history.record_end(state, rep)


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    """backend-rollback: 2 succeeded, 2 rolled back (one within SEV1 15m, one not), 1 failed rollback;
    db-restore (SEV2): 1 succeeded with no loss, 1 failed with rows lost; plus one run that never ended."""
    state = tmp_path / "state"
    record(state, report("b1", start=0))
    record(state, report("b2", start=1000))
    record(state, report("b3", status="rolled_back", start=2000, duration=120, failure_at=30, rollback=(40, 110)))
    record(state, report("b4", status="rolled_back", start=3000, duration=1200, failure_at=60, rollback=(100, 1000)))
    record(
        state,
        report("b5", status="failed", start=4000, duration=200, failure_at=20, rollback=(30, 190), verified=False),
    )
    record(
        state,
        report(
            "d1",
            "db-restore",
            start=5000,
            severity="SEV2",
            data_check="db: no rows lost",
            data_check_detail=db_rows(3, 3),
        ),
    )
    record(
        state,
        report(
            "d2",
            "db-restore",
            "failed",
            start=6000,
            severity="SEV2",
            failure_at=10,
            data_check="db: rows lost {'orders': 3}",
            data_check_detail=db_rows(5, 2),
            duration=400,
        ),
    )
    # started, never ended: its control process is long gone
    history.record_start(state, "b6", "backend-rollback", "SEV1", ts(7000), {"service": "x"}, "oncall@control")
    with sqlite3.connect(history.db_path(state)) as conn:
        conn.execute("UPDATE runs SET control_pid = 999999999 WHERE run_id = 'b6'")
    return state


def test_database_is_wal_and_versioned(synthetic: Path) -> None:
    path = history.db_path(synthetic)
    assert path == synthetic / "history.sqlite3" and path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert int(version) == history.SCHEMA_VERSION
        steps = conn.execute("SELECT COUNT(*) FROM run_steps").fetchone()[0]
    assert steps == 14  # 7 finished runs x 2 step x host rows


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    record(state, report("r1"))
    with sqlite3.connect(history.db_path(state)) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(history.HistoryError, match="newer"):
        history.list_runs(state)


def test_list_runs_and_filters(synthetic: Path) -> None:
    rows = history.list_runs(synthetic)
    assert [r.run_id for r in rows] == ["b1", "b2", "b3", "b4", "b5", "d1", "d2", "b6"]
    assert [r.run_id for r in history.list_runs(synthetic, runbook="db-restore")] == ["d1", "d2"]
    now = (T0 + timedelta(seconds=7100)).timestamp()
    recent = history.list_runs(synthetic, since_s=2200, now=now)
    assert [r.run_id for r in recent] == ["d1", "d2", "b6"]
    b3 = rows[2]
    assert (b3.status, b3.duration_s, b3.rollback_ran, b3.rollback_verified) == ("rolled_back", 120.0, True, True)
    assert b3.rollback_started == ts(2040) and b3.rollback_ended == ts(2110)
    assert b3.failure_detected == ts(2030)
    assert b3.report_path == str(synthetic / "runs" / "b3" / "report.json")
    assert b3.params == {"service": "backend", "token": "********"}
    assert b3.hosts == {"app1": {"version_before": "v2", "version_after": "v1"}}
    assert [r.data_loss for r in rows] == [False] * 6 + [True, False]


def test_unfinished_run_shows_as_interrupted(synthetic: Path) -> None:
    b6 = history.list_runs(synthetic)[-1]
    assert b6.run_id == "b6"
    assert b6.status == "interrupted" and not b6.finished and b6.ended is None
    assert "outcome unknown" in b6.status_detail


def test_run_in_progress_shows_as_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    history.record_start(state, "live", "rb", "SEV3", ts(0), {}, "me@here")
    row = history.list_runs(state)[0]
    assert row.status == "running"  # this very process recorded it and is alive
    assert metrics.from_rows([row]).overall.runs == 0


def test_a_run_whose_control_process_exited_unreaped_shows_as_interrupted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    history.record_start(state, "zombie", "rb", "SEV3", ts(0), {}, "me@here")
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for until the end: a zombie
    stat = Path(f"/proc/{child.pid}/stat")
    for _ in range(100):
        if stat.read_text().split(") ", 1)[1].startswith("Z"):
            break
        time.sleep(0.05)
    with sqlite3.connect(history.db_path(state)) as conn:
        conn.execute("UPDATE runs SET control_pid = ? WHERE run_id = 'zombie'", (child.pid,))
    try:
        assert history.list_runs(state)[0].status == "interrupted"
    finally:
        child.wait()


def test_steps_are_stored_per_host(synthetic: Path) -> None:
    run = history.get_run(synthetic, "b3")
    assert run is not None
    assert [(s.step_id, s.phase, s.host, s.status) for s in run.steps] == [
        ("swap", "main", "app1", "failed"),
        ("verify", "on_failure", "app1", "succeeded"),
    ]
    assert history.get_run(synthetic, "nope") is None


def test_record_end_is_idempotent_and_works_without_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    rep = report("solo", status="failed", failure_at=5)
    history.record_end(state, rep, report_path="/elsewhere/report.json")
    history.record_end(state, rep, report_path="/elsewhere/report.json")
    rows = history.list_runs(state, with_steps=True)
    assert len(rows) == 1 and len(rows[0].steps) == 2
    assert rows[0].report_path == "/elsewhere/report.json" and rows[0].status == "failed"


def test_history_of_an_empty_state_dir(tmp_path: Path) -> None:
    assert history.list_runs(tmp_path / "nothing") == []
    assert not (tmp_path / "nothing").exists()
    assert "no runs recorded" in history.format_runs([])


def _writer(state: str, prefix: str) -> None:
    for i in range(15):
        record(Path(state), report(f"{prefix}-{i}", start=i))


def test_concurrent_writers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    history.connect(state).close()
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_writer, args=(str(state), f"w{n}")) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(history.list_runs(state)) == 60


def test_data_lost() -> None:
    lost = DataCheck((HostRows("restore", "db", (TableRows("orders", 5, 2), TableRows("users", 4, 4))),))
    assert lost.rows_lost and lost.summary == "db: rows lost {'orders': 3}"
    kept = DataCheck((HostRows("restore", "db", (TableRows("orders", 3, 3),)),))
    assert not kept.rows_lost and kept.summary == "db: no rows lost"
    assert not DataCheck().rows_lost and DataCheck().summary == "no database step in this run"
    gone = DataCheck.from_outputs([("restore", "db", {"rows_before": {"orders": 1}, "rows_after": {}})])
    assert gone.rows_lost and gone.summary == "db: rows lost {'orders': 1}"


# ---------------------------------------------------------------- metrics


def test_metrics_per_runbook(synthetic: Path) -> None:
    m = metrics.compute(synthetic)
    b = m.runbooks["backend-rollback"]
    assert b.runs == 6
    assert b.by_status == {"succeeded": 2, "rolled_back": 2, "failed": 1, "interrupted": 1}
    assert b.success_rate == pytest.approx(2 / 6)
    assert b.rollback_frequency == pytest.approx(2 / 6)
    assert b.rollbacks == 3  # b3, b4 and the failed rollback of b5
    # MTTR: failure detected -> service verified: b3 110-30=80, b4 1000-60=940
    assert b.mttr_s == pytest.approx((80 + 940) / 2)
    # time to rollback (run start -> verified): b3 110s within 15m, b4 1000s not; b5 not restored
    assert b.rollbacks_within_target == 1
    assert b.within_target_ratio == pytest.approx(1 / 3)
    assert b.severity_target_s == 900
    assert b.data_loss_incidents == 0
    assert b.budget_missed == 1  # b4 took 1200s of a 300s budget

    d = m.runbooks["db-restore"]
    assert (d.runs, d.success_rate, d.rollback_frequency, d.mttr_s) == (2, 0.5, 0.0, None)
    assert d.data_loss_incidents == 1
    assert d.severity_target_s == 3600  # SEV2 response target from policies/severity.yml

    overall = m.overall
    assert overall.runs == 8 and overall.succeeded == 3 and overall.rolled_back == 2
    assert overall.mttr_s == pytest.approx(510)
    assert overall.data_loss_incidents == 1


def test_metrics_filters_and_check_mode(tmp_path: Path, synthetic: Path) -> None:
    assert metrics.compute(synthetic, runbook="db-restore").overall.runs == 2
    record(synthetic, report("c1", start=8000, check_mode=True))
    assert metrics.compute(synthetic).overall.runs == 8
    assert metrics.compute(synthetic, include_check=True).overall.runs == 9
    assert metrics.compute(tmp_path / "empty").runbooks == {}


def test_format_text(synthetic: Path) -> None:
    text = metrics.format_text(metrics.compute(synthetic))
    lines = text.splitlines()
    backend = next(line for line in lines if line.startswith("backend-rollback"))
    assert "33%" in backend and "1/3" in backend and "8m30s" in backend
    assert next(line for line in lines if line.startswith("ALL")).split()[1] == "8"
    assert "no runs recorded" in metrics.format_text(metrics.compute(synthetic / "none"))


SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*)\})? '
    r"(?P<value>[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|NaN|Inf)|[-+]Inf)$"
)


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A strict reading of the text exposition format 0.0.4 (what Prometheus itself accepts)."""
    assert text.endswith("\n")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    typed: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, f"second HELP for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped")
            assert name not in typed and not any(key[0] == name for key in samples), f"TYPE after samples: {name}"
            typed[name] = kind
            continue
        assert line and not line.startswith("#"), line
        match = SAMPLE.match(line)
        assert match, f"bad sample line: {line!r}"
        labels = tuple(
            (k, v.encode().decode("unicode_escape"))
            for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"', match.group("labels") or "")
        )
        assert match.group("name") in typed, f"sample without TYPE: {line}"
        key = (match.group("name"), labels)
        assert key not in samples, f"duplicate series {key}"
        samples[key] = float(match.group("value"))
    return samples


def test_format_prometheus(synthetic: Path) -> None:
    text = metrics.format_prometheus(metrics.compute(synthetic))
    samples = parse_prometheus(text)
    assert "# TYPE runbook_runs_total counter" in text
    assert "# HELP runbook_mttr_seconds " in text
    b = (("runbook", "backend-rollback"),)
    assert samples[("runbook_runs_total", (("runbook", "backend-rollback"), ("status", "rolled_back")))] == 2
    assert samples[("runbook_runs_total", (("runbook", "db-restore"), ("status", "failed")))] == 1
    assert samples[("runbook_mttr_seconds", b)] == pytest.approx(510)
    assert samples[("runbook_rollback_ratio", b)] == pytest.approx(1 / 3)
    assert samples[("runbook_success_ratio", b)] == pytest.approx(1 / 3)
    assert samples[("runbook_rollbacks_within_target_total", b)] == 1
    assert samples[("runbook_data_loss_incidents_total", (("runbook", "db-restore"),))] == 1
    assert samples[("runbook_severity_target_seconds", b)] == 900
    assert samples[("runbook_overall_runs_total", ())] == 8
    assert ("runbook_mttr_seconds", (("runbook", "db-restore"),)) not in samples  # no rollback: no MTTR


def test_prometheus_label_escaping(tmp_path: Path) -> None:
    row = history.RunRow(
        run_id="x",
        runbook='we"ird\\name\nline',
        severity="SEV3",
        status="succeeded",
        status_detail="",
        operator="",
        trigger="",
        check_mode=False,
        params={},
        started=ts(0),
        started_epoch=T0.timestamp(),
        ended=ts(1),
        duration_s=1.0,
        budget_s=10.0,
        budget_met=True,
        severity_target_s=86400.0,
        severity_target_met=True,
        failure_detected=None,
        rollback_ran=False,
        rollback_status="not needed",
        rollback_started=None,
        rollback_ended=None,
        rollback_duration_s=None,
        rollback_verified=None,
        data_loss=False,
        data_check="",
        hosts={},
        report_path=None,
        finished=True,
    )
    text = metrics.format_prometheus(metrics.from_rows([row]))
    assert 'runbook="we\\"ird\\\\name\\nline"' in text
    samples = parse_prometheus(text)
    assert samples[("runbook_runs_total", (("runbook", 'we"ird\\name\nline'), ("status", "succeeded")))] == 1
    assert metrics.escape_label('a"b') == 'a\\"b'


def test_prometheus_numbers() -> None:
    assert metrics._number(3.0) == "3"
    assert metrics._number(0.25) == "0.25"
    assert metrics._number(math.nan) == "NaN"
    assert metrics._number(math.inf) == "+Inf"


def test_metrics_to_dict_is_json(synthetic: Path) -> None:
    data = metrics.compute(synthetic).to_dict()
    assert json.loads(json.dumps(data))["runbooks"]["backend-rollback"]["runs"] == 6


def test_history_module_is_importable_without_side_effects(tmp_path: Path) -> None:
    code = "import runner.records.history, runner.records.metrics; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "ok"
    assert list(tmp_path.iterdir()) == []
