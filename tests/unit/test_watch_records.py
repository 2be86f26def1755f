"""The watch in the records: its outputs reach the journal and the report even when the step fails, the typed
Watch record with the time to detect from the release going live, report.md / report.html (an inline SVG chart
per check, everything escaped) / junit.xml, the history column and `runbook metrics`."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.engine.events import FAILED, EventCollector, HostStepResult
from runner.engine.render import RESET_TASK, play_name
from runner.language.loader import load_runbook_text
from runner.language.model import Step
from runner.paths import ROLES_DIR, SCHEMAS_DIR
from runner.records import formats, history, history_store, metrics
from runner.records.build import RunFacts, build_report
from runner.records.model import Report, Rollback, RunStatus
from runner.records.report import render_markdown

VALIDATOR = jsonschema.Draft202012Validator(json.loads((SCHEMAS_DIR / "report.schema.json").read_text()))

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata:
  name: deploy-watched
spec:
  steps:
    - id: deploy
      hosts: app
      uses: image_swap
      with: {container: backend, to: "lab/backend:v3"}
    - id: verify
      hosts: app
      uses: verify
      with:
        http: [{url: "http://{{ ansible_host }}:8080/health", status: 200}]
    - id: watch
      hosts: app
      uses: watch
      with:
        checks:
          - {name: errors, provider: http, url: "http://{{ ansible_host }}:8080/", fail_if: "> 0.05", for: 20s}
  on_failure:
    - id: rollback
      hosts: app
      uses: image_swap
      with: {container: backend, to: previous}
"""
HOSTILE = '<script>alert("x")</script> & |pipe|'


def at(seconds: float) -> str:
    return f"2026-01-15T10:{int(seconds) // 60:02d}:{seconds % 60:06.3f}+00:00"


def watch_outputs(verdict: str = "breached", name: str = "errors") -> dict[str, Any]:
    """What the watch role publishes (roles/watch/tasks/publish.yml) for a watch that started at 10:00:30."""
    breached = verdict == "breached"
    samples = [(0.0, 0.0, False), (10.0, 0.2, True), (20.0, None, False), (30.0, 0.25, True)]
    measurements = [{"t": t, "value": v, "breach": b} for t, v, b in samples]
    measurements[2]["error"] = "timed out <after 5s>"
    check = {
        "name": name, "provider": "http", "fail_if": "> 0.05", "threshold": 0.05, "operator": ">", "for": 20.0,
        "interval": 10.0, "verdict": verdict, "reason": f"{name}: 0.25, fail_if > 0.05 held for 20s" if breached
        else ("" if verdict == "healthy" else f"{name}: 3 consecutive samples without a value"),
        "time_to_detect": 30.0 if breached else None, "samples": 4, "measurements": measurements,
    }
    return {
        "verdict": verdict, "healthy": verdict == "healthy", "breached_check": name if breached else None,
        "reason": check["reason"] or "1 check(s) healthy for the whole window",
        "time_to_detect": 30.0 if breached else None, "started_at": "2026-01-15T10:00:30.000000Z",
        "ended_at": "2026-01-15T10:01:00.500000Z", "checks": [{"name": name, "ok": False, "detail": "x"}],
        "results": [check], "check_mode": False,
    }


def result(step: str, host: str, status: str, start: float, end: float, **kw: Any) -> HostStepResult:
    phase = kw.pop("phase", "main")
    return HostStepResult(step, phase, host, status, started=at(start), ended=at(end),
                          duration_s=end - start, **kw)


def build(results: list[HostStepResult], status: RunStatus = RunStatus.ROLLED_BACK) -> Report:
    runbook = load_runbook_text(RUNBOOK, "deploy-watched.yml", [ROLES_DIR])
    facts = RunFacts(
        run_id="deploy-watched-1", runbook=runbook, status=status, detail="", check_mode=False,
        strict_budget=False, operator="op@control", trigger="", started=at(0), ended=at(75), duration_s=75.0,
        failure_detected=at(61), params={}, on_failure=Rollback.not_needed(), inventory="inv.yml",
        resumed_from=None, lock=None,
    )
    return build_report(facts, results)


def run_results(verdict: str = "breached", name: str = "errors") -> list[HostStepResult]:
    return [
        result("deploy", "app1", "succeeded", 1, 12, changed=True),
        result("deploy", "app2", "succeeded", 12, 25.5, changed=True),
        result("verify", "app1", "succeeded", 26, 28),
        result("watch", "app1", "failed" if verdict != "healthy" else "succeeded", 29, 61,
               outputs=watch_outputs(verdict, name), message=f"watch on app1 {verdict}"),
    ]


def test_the_watch_record_times_detection_from_the_release_going_live() -> None:
    report = build(run_results())
    (watch,) = report.watches
    assert (watch.step, watch.host, watch.verdict, watch.breached_check) == ("watch", "app1", "breached", "errors")
    assert watch.release_live.startswith("2026-01-15T10:00:25.5")  # the last host the swap changed
    assert watch.time_to_detect == 30.0 and watch.time_to_detect_s == pytest.approx(4.5 + 30.0)
    assert report.time_to_detect_s == pytest.approx(34.5)
    (check,) = watch.checks
    assert (check.fail_if, check.threshold, check.for_s, check.interval_s) == ("> 0.05", 0.05, 20.0, 10.0)
    assert [(m.t, m.value, m.breach) for m in check.measurements] == [
        (0.0, 0.0, False), (10.0, 0.2, True), (20.0, None, False), (30.0, 0.25, True)]
    assert check.measurements[2].error == "timed out <after 5s>"
    data = report.to_json()
    assert list(VALIDATOR.iter_errors(data)) == []
    assert Report.from_dict(json.loads(json.dumps(data))) == report


def test_without_a_release_step_that_changed_anything_the_watch_start_is_the_release() -> None:
    results = run_results()
    results[0].changed = results[1].changed = False
    (watch,) = build(results).watches
    assert watch.release_live.startswith("2026-01-15T10:00:30") and watch.time_to_detect_s == 30.0


def test_a_healthy_watch_has_no_time_to_detect_and_older_reports_read_without_watches() -> None:
    report = build(run_results("healthy"), RunStatus.SUCCEEDED)
    assert report.watches[0].verdict == "healthy" and report.time_to_detect_s is None
    old = report.to_json()
    del old["watches"], old["time_to_detect_s"]
    assert Report.from_dict(old).watches == () and list(VALIDATOR.iter_errors(old)) == []


def test_markdown_has_a_section_per_watch_with_its_measurements() -> None:
    text = render_markdown(build(run_results()))
    assert "- **Time to detect**: 34.5s (release live → breach confirmed by a watch)" in text
    section = text.split("## Watches", 1)[1].split("\n## ", 1)[0]
    assert "### `watch` on app1 — BREACHED" in section
    assert "- **Why**: errors: 0.25, fail_if > 0.05 held for 20s" in section
    assert "- **Breached check**: errors" in section
    row = "| errors | `> 0.05` | 20.0s | breached | 4 | 0.0s: 0 · 10.0s: **0.2** · 20.0s: — · 30.0s: **0.25** |"
    assert row in section


def test_markdown_cells_keep_their_table_whole() -> None:
    text = render_markdown(build(run_results(name=HOSTILE)))
    row = next(line for line in text.splitlines() if line.startswith("| <script>"))
    assert row.count("|") - row.count("\\|") == 7  # the name's pipes are escaped


def test_html_draws_an_svg_chart_per_check_with_threshold_and_decision() -> None:
    page = formats.render_html(build(run_results()))
    assert "<script" not in page and "http://" not in page.split("<svg", 1)[1].replace("http://www.w3.org", "")
    (svg,) = [part.split("</svg>")[0] for part in page.split("<svg")[1:]]
    assert 'class="watch-chart" data-check="errors"' in svg
    assert svg.count('class="sample') == 3 and svg.count('class="sample breach"') == 2
    assert svg.count('class="nodata"') == 1 and "timed out &lt;after 5s&gt;" in svg
    assert 'class="threshold"' in svg and "fail_if &gt; 0.05" in svg
    assert 'class="decision" data-t="30"' in svg and "breach confirmed at 30.0s" in svg
    ET.fromstring(f"<svg{svg}</svg>".replace(' xmlns="http://www.w3.org/2000/svg"', ""))  # well formed


def test_html_escapes_every_watch_text() -> None:
    page = formats.render_html(build(run_results(name=HOSTILE)))
    assert HOSTILE not in page and "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; |pipe|" in page


def test_a_healthy_watch_chart_marks_the_end_of_the_window() -> None:
    page = formats.render_html(build(run_results("healthy"), RunStatus.SUCCEEDED))
    assert 'class="decision" data-t="30.5"' in page and "window ended at 30.5s" in page


def test_junit_fails_a_breached_watch_and_an_inconclusive_one_the_step_let_pass() -> None:
    root = ET.fromstring(formats.render_junit(build(run_results())))
    case = root.find(".//testcase[@classname='deploy-watched.main.watch']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "watch breached"
    assert failure.get("message") == "watch breached: errors: 0.25, fail_if > 0.05 held for 20s"
    results = run_results("inconclusive")
    results[-1].status = "succeeded"  # on_inconclusive: pass
    root = ET.fromstring(formats.render_junit(build(results, RunStatus.SUCCEEDED)))
    case = root.find(".//testcase[@classname='deploy-watched.main.watch']")
    assert case is not None and case.find("failure") is not None
    assert root.get("failures") == "1"


def test_outputs_a_role_published_before_it_failed_reach_the_result() -> None:
    step = Step(id="watch", uses="watch", hosts="app")

    def event(kind: str, task: str, res: dict[str, Any]) -> dict[str, Any]:
        return {"event": kind, "event_data": {"play": play_name(step), "host": "app1", "task": task, "res": res}}

    published: list[HostStepResult] = []
    collector = EventCollector([step], on_result=published.append)
    collector(event("runner_on_ok", RESET_TASK, {"ansible_facts": {"runbook_outputs": {}}}))
    collector(event("runner_on_ok", "Publish outputs", {"ansible_facts": {"runbook_outputs": watch_outputs()}}))
    collector(event("runner_on_failed", "Fail when a check breached", {"msg": "watch on app1 breached"}))
    collector.finish()
    (final,) = published
    assert final.status == FAILED and final.outputs["verdict"] == "breached"
    assert final.to_dict()["outputs"]["results"][0]["measurements"][1]["value"] == 0.2  # what the journal keeps


def test_history_keeps_the_time_to_detect_and_metrics_show_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    history.record_end(state, build(run_results()))
    healthy = build(run_results("healthy"), RunStatus.SUCCEEDED).to_json()
    healthy["run_id"] = "deploy-watched-2"
    history.record_end(state, healthy)
    rows = history.list_runs(state)
    assert [r.time_to_detect_s for r in rows] == [pytest.approx(34.5), None]
    computed = metrics.from_rows(rows)
    assert computed.overall.mean_time_to_detect_s == pytest.approx(34.5) and computed.overall.detections == 1
    text = metrics.format_text(computed)
    assert "DETECT" in text.splitlines()[0] and "34.5s" in text.splitlines()[1]
    exposition = metrics.format_prometheus(computed)
    assert 'runbook_time_to_detect_seconds{runbook="deploy-watched"} 34.5' in exposition
    assert "# TYPE runbook_time_to_detect_seconds gauge" in exposition
    assert "runbook_overall_time_to_detect_seconds 34.5" in exposition
    assert 'runbook_detections_total{runbook="deploy-watched"} 1' in exposition
    assert computed.to_dict()["overall"]["mean_time_to_detect_s"] == pytest.approx(34.5)


def test_a_version_2_history_gains_the_time_to_detect_column(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(history.db_path(state)) as conn:
        for schema in (history_store._SCHEMA_V1, history_store._SCHEMA_V2):
            conn.executescript(schema)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
        conn.execute("INSERT INTO runs (run_id, runbook, status, started, started_epoch, ended, duration_s) "
                     "VALUES ('old', 'deploy', 'succeeded', '2026-01-01T00:00:00+00:00', 1767225600, "
                     "'2026-01-01T00:01:00+00:00', 60)")
    (old,) = history.list_runs(state)
    assert old.run_id == "old" and old.time_to_detect_s is None
    history.record_end(state, build(run_results()))
    assert [r.time_to_detect_s for r in history.list_runs(state)] == [None, pytest.approx(34.5)]
    with sqlite3.connect(history.db_path(state)) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
