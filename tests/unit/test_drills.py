"""Drills without the lab: the drills table from scenario results, drills in history and metrics, drill schedules
(the cron line they write) and the `runbook drill` command's refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import cli
from runner.devtools import drills_table
from runner.engine import drills as drill_runs
from runner.engine import schedules
from runner.errors import InvalidInput
from runner.records import drills, history, metrics

ROOT = Path(__file__).resolve().parents[2]


def result(scenario: str, *, passed: bool = True, duration: float = 19.7, **report: Any) -> dict[str, Any]:
    run = {
        "run_id": f"{scenario}-20260101T000000Z-abcdef", "runbook": {"name": scenario, "version": ""},
        "severity": "SEV1", "status": "succeeded", "check_mode": False, "trigger": f"drill:{scenario}",
        "started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:00:20+00:00", "duration_s": duration,
        "budget_s": 300, "budget_met": True, "severity_target_s": 900, "severity_target_met": True, **report,
    }
    return {
        "scenario": scenario, "runbook": scenario, "passed": passed, "duration_s": duration, "budget_s": 300,
        "rows_lost": 0 if passed else 250,
        "checks": {"within the budget": True, "no row lost, every table checksum unchanged": passed},
        "report": run,
    }


def test_every_lab_runnable_runbook_has_a_scenario_and_only_sev1_ones_are_in_make_test() -> None:
    books = drills_table.shipped_runbooks(ROOT)
    missing = [b.name for b in books if drills_table.test_sequence(ROOT, b.name) is None]
    assert missing == [b.name for b in books if set(b.tags) & set(drills_table.MISSING)] and missing
    for name in drill_runs.scenarios(ROOT):
        sequence = drills_table.test_sequence(ROOT, name) or []
        assert sequence[:3] == ["syntax", "create", "prepare"] and sequence[-2:] == ["verify", "destroy"], name
        assert sequence.index("converge") < sequence.index("verify")
        assert "check" not in sequence or sequence.index("check") < sequence.index("converge"), name


def test_the_table_has_a_row_per_runbook_from_the_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "blue-green-rollback.json").write_text(json.dumps(result("blue-green-rollback", duration=4.2)))
    (results / "data-rollback.json").write_text(json.dumps(result("data-rollback", passed=False)))
    text = drills_table.render(ROOT, results, today="2026-01-02")
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Runbook |")]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines}
    assert set(rows) == {b.name for b in drills_table.shipped_runbooks(ROOT)}
    blue = rows["blue-green-rollback"]
    assert blue[1].startswith("seed 002 §1") and blue[2] == "SEV1" and blue[3] == "5m00s" and blue[4] == "4.2s"
    assert blue[5:8] == ["0", "yes", "passed"] and blue[8] == "2026-01-01 |"
    data = rows["data-rollback"]
    assert data[5] == "250" and data[6].startswith("n/a")
    assert data[7] == "FAILED: not no row lost, every table checksum unchanged"
    assert "stopped before verify" in rows["deploy"][7] and rows["deploy"][8] == "2026-01-02 |"
    assert "no MongoDB host" in rows["mongo-restore"][7]


def test_main_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drills.md"
    assert drills_table.main(["--results", str(tmp_path), "--output", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out and out.read_text().startswith("# Drills\n")


def test_a_drill_is_recorded_apart_from_incidents(tmp_path: Path) -> None:
    real = result("deploy")["report"] | {"run_id": "real-1", "trigger": "", "runbook": {"name": "deploy"}}
    history.record_end(tmp_path, real)
    passed = drills.record(tmp_path, "deploy", result("deploy", status="rolled_back"), True)
    failed = drills.record(tmp_path, "deploy", result("deploy", passed=False), False)
    stopped = drills.record(tmp_path, "deploy", None, False, "molecule ended with exit status 2 before verify")
    rows = {row.run_id: row for row in history.list_runs(tmp_path)}
    assert rows[passed].status == "succeeded" and rows[passed].trigger == "drill:deploy"
    assert rows[passed].status_detail == "drill passed; the runbook ended rolled_back, as the drill expects"
    assert rows[failed].status == "failed" and "not: no row lost" in rows[failed].status_detail
    assert "exit status 2 before verify" in rows[stopped].status_detail
    assert json.loads((tmp_path / "runs" / passed / "report.json").read_text())["trigger"] == "drill:deploy"

    incidents = metrics.compute(tmp_path)
    assert incidents.overall.runs == 1 and incidents.runbooks["deploy"].runs == 1
    drilled = drills.from_rows(history.list_runs(tmp_path))
    assert (drilled.overall.drills, drilled.overall.passed) == (3, 1)
    assert drilled.scenarios["deploy"].pass_rate == pytest.approx(1 / 3)
    assert drilled.scenarios["deploy"].mean_duration_s == pytest.approx(19.7)
    assert "deploy" in drills.format_text(drilled)
    assert 'runbook_drills_total{scenario="deploy"} 3' in drills.prometheus_lines(drilled)


def test_metrics_command_shows_drills_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drills.record(tmp_path, "cache-flush", result("cache-flush"), True)
    assert cli.main(["metrics", "--state-dir", str(tmp_path), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["overall"]["runs"] == 0 and shown["drills"]["scenarios"]["cache-flush"]["pass_rate"] == 1.0
    assert cli.main(["metrics", "--state-dir", str(tmp_path)]) == 0
    assert "cache-flush" in capsys.readouterr().out.split("DRILL ", 1)[1]


def test_a_drill_schedule_writes_a_cron_line_running_the_drills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crond = tmp_path / "cron.d"
    monkeypatch.setenv("RUNBOOK_CRON_DIR", str(crond))
    state = tmp_path / "state"
    add = ["schedule", "add", "monthly-drills", "drill:backend-image-rollback,data-rollback", "--cron", "0 4 1 * *"]
    assert cli.main([*add, "--state-dir", str(state)]) == 0
    line = (crond / "runbook-monthly-drills").read_text().splitlines()[-1]
    exe = schedules.runbook_executable()
    assert line == (
        f"0 4 1 * * root flock -n {state}/schedules/monthly-drills.lock {exe} drill backend-image-rollback "
        f"data-rollback --project {ROOT} --state-dir {state} >> {state}/schedules/monthly-drills.log 2>&1"
    )
    capsys.readouterr()
    assert cli.main(["schedule", "list", "--state-dir", str(state), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["runbook"] == "drill:backend-image-rollback,data-rollback"
    assert cli.main(["schedule", "remove", "monthly-drills", "--state-dir", str(state)]) == 0
    assert list(crond.iterdir()) == []


def test_unknown_drills_and_bad_targets_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNBOOK_CRON_DIR", str(tmp_path / "cron.d"))
    assert cli.main(["schedule", "add", "d", "drill:no-such", "--cron", "0 4 1 * *", "--state-dir", str(tmp_path)]) == 2
    assert "no drill named 'no-such'" in capsys.readouterr().err
    with pytest.raises(InvalidInput):
        schedules.drill_names("drill:a,,b")
    assert cli.main(["drill", "shared", "--state-dir", str(tmp_path)]) == 2
    assert "no drill named 'shared'" in capsys.readouterr().err
    assert cli.main(["schedule", "add", "r", str(ROOT / "runbooks" / "deploy.yml"), "--cron", "0 4 1 * *",
                     "--state-dir", str(tmp_path)]) == 2  # fmt: skip
    assert "-i/--inventory is required" in capsys.readouterr().err
    assert not (tmp_path / "cron.d").exists()


def test_molecule_runs_with_the_runner_bin_first(tmp_path: Path) -> None:
    env = drill_runs.molecule_env(ROOT, tmp_path)
    assert env["PATH"].split(":")[0].endswith("bin") and env["DRILL_RESULTS_DIR"] == str(tmp_path)
    assert (Path(env["PATH"].split(":")[0]) / "ansible-config").exists()
