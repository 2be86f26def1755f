"""report.schema.json, report.html and junit.xml: synthetic reports of every outcome plus one real local run."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner import api
from runner.engine.runflow import RunOptions
from runner.errors import InvalidInput
from runner.paths import SCHEMAS_DIR
from runner.records import formats
from runner.records.model import Report, RunStatus
from runner.records.report import render_markdown, write_report

SCHEMA = json.loads((SCHEMAS_DIR / "report.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def step(
    step_id: str, host: str, status: str, phase: str = "main", at: str = "10:00:01", end: str = "10:00:03", **kw: Any
) -> dict[str, Any]:
    return {
        "id": step_id,
        "phase": phase,
        "host": host,
        "status": status,
        "duration_s": 2.0,
        "changed": kw.get("changed", status == "succeeded"),
        "message": kw.get("message", ""),
        "started": f"2026-01-15T{at}.000000+00:00" if at else "",
        "ended": f"2026-01-15T{end}.000000+00:00" if end else "",
    }


def make_report(status: str = "rolled_back") -> dict[str, Any]:
    """A report shaped exactly as runflow._finish_files builds it."""
    steps = [
        step("snapshot", "db", "succeeded", at="10:00:01", end="10:00:05"),
        step("swap", "app1", "failed", at="10:00:05", end="10:00:09", message="health <b>500</b> & version v2"),
        step("swap", "app2", "skipped", at="10:00:05", end="10:00:05", message="condition false (when:)"),
        step("undo", "app1", "succeeded", phase="on_failure", at="10:00:10", end="10:00:14"),
        step("verify", "app1", "succeeded", phase="on_failure", at="10:00:14", end="10:00:16"),
        step("verify", "app2", "unreachable", phase="on_failure", at="10:00:14", end="10:00:15", message="ssh"),
        step("late", "app2", "incomplete", phase="on_failure", at="", end=""),
    ]
    report: dict[str, Any] = {
        "run_id": "backend-rollback-20260115T100000Z-abc123",
        "runbook": {
            "name": "backend-rollback",
            "title": "Roll the backend back",
            "file": "/srv/runbooks/backend-rollback.yml",
            "sha256": "a" * 64,
            "owner": "platform-oncall",
        },
        "severity": "SEV1",
        "status": status,
        "status_detail": "step 'swap' failed on app1: health 500; on_failure restored the service and verified it",
        "check_mode": False,
        "operator": "oncall@control",
        "trigger": "INC-42: 500s after release",
        "started": "2026-01-15T10:00:00.000+00:00",
        "ended": "2026-01-15T10:00:17.000+00:00",
        "duration_s": 17.0,
        "budget_s": 300,
        "budget_from": "runbook",
        "budget_met": True,
        "severity_target_s": 900,
        "severity_target_met": True,
        "failure_detected": "2026-01-15T10:00:09.000000+00:00",
        "params": {"service": "backend", "token": "********"},
        "hosts": {
            "app1": {"version_before": "backend:v1", "version_after": "backend:v1"},
            "app2": {"version_before": None, "version_after": None},
        },
        "steps": steps,
        "outputs": {"snapshot@db": {"backup": {"path": "/var/backups/shop.dump", "size": 1234, "sha256": "b" * 64}}},
        "on_failure": {
            "ran": True,
            "started": "2026-01-15T10:00:09.500+00:00",
            "ended": "2026-01-15T10:00:16.000+00:00",
            "duration_s": 6.5,
            "status": "succeeded",
            "verified": True,
            "restored": ["app1: undo → backend:v1"],
        },
        "backups": [
            {"step": "snapshot", "host": "db", "path": "/var/backups/shop.dump", "size": 1234, "sha256": "b" * 64}
        ],
        "verification": [
            {
                "step": "verify",
                "phase": "on_failure",
                "host": "app1",
                "name": "GET /health",
                "ok": True,
                "detail": "200",
            }
        ],
        "data_check": "db: no rows lost",
        "data_check_detail": [
            {
                "step": "snapshot",
                "host": "db",
                "tables": [{"table": "orders", "rows_before": 3, "rows_after": 3, "rows_lost": 0}],
            }
        ],
        "notifications": [
            {"kind": "webhook", "target": "https://hooks.example/********", "ok": True, "error": "", "attempts": 1}
        ],
        "inventory": "/srv/inventories/prod/hosts.yml",
        "runner_version": "0.1.0",
        "watches": [],
        "time_to_detect_s": None,
    }
    if status == "succeeded":
        report["on_failure"] = {"ran": False, "status": "not needed", "duration_s": 0.0, "restored": []}
        report["failure_detected"] = None
    return dict(report)


def errors(report: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(report)]


# ---------------------------------------------------------------- schema


def test_schema_is_valid_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"].endswith("2020-12/schema")


@pytest.mark.parametrize("status", ["succeeded", "rolled_back", "failed", "interrupted"])
def test_synthetic_reports_validate(status: str) -> None:
    assert errors(make_report(status)) == []


def test_schema_allows_extra_top_level_keys_and_catches_bad_ones() -> None:
    report = make_report()
    report["lock"] = {"holder": None}
    assert errors(report) == []
    bad = copy.deepcopy(report)
    bad["status"] = "exploded"
    bad["steps"][0]["phase"] = "cleanup"
    bad["notifications"][0].pop("attempts")
    del bad["run_id"]
    problems = " ".join(errors(bad))
    for expected in ("'exploded' is not one of", "'cleanup' is not one of", "'attempts' is a required", "'run_id'"):
        assert expected in problems


def test_schema_requires_rollback_times_when_on_failure_ran() -> None:
    report = make_report()
    del report["on_failure"]["ended"]
    assert any("ended" in e for e in errors(report))


def test_every_property_is_described() -> None:
    def walk(node: Any, where: str) -> list[str]:
        missing = []
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "description" not in sub:
                    missing.append(f"{where}.{name}")
            for key, value in node.items():
                if key not in ("if", "then", "else"):
                    missing += walk(value, f"{where}.{key}" if where else key)
        return missing

    assert walk(SCHEMA, "") == []


# ---------------------------------------------------------------- junit


def test_junit_one_testcase_per_step_and_host() -> None:
    report = make_report()
    root = ET.fromstring(formats.render_junit(report))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        (f"backend-rollback.{s['phase']}.{s['id']}", s["host"]) for s in report["steps"]
    ]
    assert suite.get("tests") == "7"
    assert suite.get("failures") == "2"  # failed + unreachable
    assert suite.get("skipped") == "1"
    assert suite.get("errors") == "1"  # incomplete
    assert float(cases[0].get("time") or 0) == pytest.approx(2.0)

    swap_app1 = cases[1]
    failure = swap_app1.find("failure")
    assert failure is not None
    assert failure.get("message") == "health <b>500</b> & version v2"
    assert failure.get("type") == "failed"
    assert swap_app1.find("skipped") is None

    skipped = cases[2].find("skipped")
    assert skipped is not None and skipped.get("message") == "condition false (when:)"
    unreachable = cases[5].find("failure")
    assert unreachable is not None and unreachable.get("type") == "unreachable"
    incomplete = cases[6].find("error")
    assert incomplete is not None and incomplete.get("type") == "incomplete"
    assert cases[0].find("failure") is None and cases[0].find("skipped") is None

    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["status"] == "rolled_back"
    assert props["run_id"] == report["run_id"]
    assert props["budget_met"] == "true"


def test_junit_survives_control_characters_and_empty_report() -> None:
    report = make_report()
    report["steps"][1]["message"] = "bad \x00\x1b[31m bytes"
    root = ET.fromstring(formats.render_junit(report))
    failure = root.find("testsuite/testcase[2]/failure")
    assert failure is not None and "bytes" in (failure.get("message") or "")
    empty = ET.fromstring(formats.render_junit({"run_id": "x", "runbook": {"name": "x"}, "steps": []}))
    assert empty.get("tests") == "0"


# ---------------------------------------------------------------- html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> _Collect:
    parser = _Collect()
    parser.feed(text)
    return parser


def test_html_is_self_contained_with_all_sections() -> None:
    report = make_report()
    html = formats.render_html(report)
    page = parse_html(html)
    tags = {t for t, _ in page.tags}
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(" not in html and "@import" not in html
    text = " ".join(page.text)
    for heading in (
        "Incident details",
        "Recovery actions",
        "Version rolled back to",
        "Timeline",
        "Steps",
        "What on_failure did",
        "Test results",
        "Backups",
        "Notifications",
        "Lessons learned",
    ):
        assert heading in text, heading
    for value in ("INC-42: 500s after release", "oncall@control", "backend:v1", "/var/backups/shop.dump", "SEV1"):
        assert value in text, value


def test_html_escapes_report_text() -> None:
    html = formats.render_html(make_report())
    assert "<b>500</b>" not in html
    assert "&lt;b&gt;500&lt;/b&gt; &amp; version v2" in html


def test_html_timeline_rows_and_positions() -> None:
    report = make_report()
    page = parse_html(formats.render_html(report))
    rows = [a for t, a in page.tags if "tl-row" in (a.get("class") or "").split()]
    # main steps first, then on_failure; one row per step x host
    assert [(a["data-phase"], a["data-step"], a["data-host"], a["data-status"]) for a in rows] == [
        ("main", "snapshot", "db", "succeeded"),
        ("main", "swap", "app1", "failed"),
        ("main", "swap", "app2", "skipped"),
        ("on_failure", "undo", "app1", "succeeded"),
        ("on_failure", "verify", "app1", "succeeded"),
        ("on_failure", "verify", "app2", "unreachable"),
        ("on_failure", "late", "app2", "incomplete"),
    ]
    bars = [a for t, a in page.tags if "tl-bar" in (a.get("class") or "").split()]
    assert len(bars) == 6  # the incomplete step has no timing
    first = bars[0]["style"] or ""
    # snapshot: +1s .. +5s of a 17s run
    assert re.search(r"left:5\.88\d*%", first) and re.search(r"width:23\.5\d*%", first), first
    assert "background:#c62828" in (bars[1]["style"] or "")
    markers = [a for t, a in page.tags if "marker" in (a.get("class") or "").split()]
    assert {m["class"] for m in markers} >= {"marker marker-failure", "marker marker-verified"}


def test_timeline_tolerates_missing_times() -> None:
    report = make_report()
    report["started"] = ""
    for s in report["steps"]:
        s["started"] = s["ended"] = ""
    line = formats.timeline(report)
    assert all(not bar.has_time for row in line.rows for bar in row.bars)
    assert "no timing" in formats.render_html(report)


def test_html_renders_a_partial_report() -> None:
    html = formats.render_html({"run_id": "r1", "runbook": {"name": "x"}, "status": "interrupted"})
    assert "interrupted" in html and "no step ran" in html


def test_rolled_back_to() -> None:
    assert formats.rolled_back_to(make_report()) == "backend:v1"
    assert formats.rolled_back_to(make_report("succeeded")) == ""


def test_markdown_keeps_the_seed_sections() -> None:
    md = render_markdown(make_report())
    for heading in ("## Incident details", "## Recovery actions", "## Test results", "## Lessons learned"):
        assert heading in md
    for line in (
        "**Time**",
        "**Severity**",
        "**Cause / trigger**: INC-42",
        "**Version rolled back to**: backend:v1",
        "**Started**",
        "**Ended**",
        "**Total duration**",
    ):
        assert line in md, line
    assert "- [x] app1 `verify` (on_failure): GET /health" in md
    assert "- [x] Data check: db: no rows lost" in md
    lost = make_report()
    lost["data_check"] = "db: rows lost {'orders': 3}"
    lost["data_check_detail"][0]["tables"][0].update(rows_after=0, rows_lost=3)
    assert "- [ ] Data check: db: rows lost" in render_markdown(lost)


def test_write_all_writes_atomically(tmp_path: Path) -> None:
    report = make_report()
    written = formats.write_all(report, tmp_path / "out")
    assert set(written) == {"html", "junit"}
    assert written["html"].name == "report.html" and written["junit"].name == "junit.xml"
    assert written["html"].read_text().startswith("<!DOCTYPE html>")
    ET.fromstring(written["junit"].read_text())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "report.html"]
    # rewriting replaces the files whole
    report["status"] = "failed"
    formats.write_all(report, tmp_path / "out")
    assert 'data-status="failed"' in written["html"].read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "report.html"]


# ---------------------------------------------------------------- the typed record


@pytest.mark.parametrize("status", ["succeeded", "rolled_back", "failed", "interrupted"])
def test_report_json_round_trips_through_the_typed_record(status: str) -> None:
    report = make_report(status)
    report["resumed_from"] = None
    report["lock"] = {"name": "host", "hosts": ["app1"], "taken_over": {}, "held_by": {"app2": None}}
    typed = Report.from_dict(report)
    assert typed.status is RunStatus(status)
    assert typed.to_json() == report
    assert Report.from_json(json.dumps(typed.to_json())) == typed
    assert errors(typed.to_json()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "not a readable run report"),
        ("[1, 2]", "it holds an array, not an object"),
        ('{"run_id": "r", "duration_s": NaN}', "NaN is not a number JSON allows"),
        ('{"run_id": "r", "budget_s": Infinity}', "Infinity is not a number JSON allows"),
        ('{"steps": []}', "run_id is missing"),
        ('{"run_id": "r", "steps": [{"id": "a", "status": "exploded"}]}', "steps[0].status is 'exploded'"),
        ('{"run_id": "r", "hosts": []}', "hosts must be an object, not an array"),
        ('{"run_id": "r", "on_failure": {"ran": "yes"}}', "on_failure.ran must be true or false"),
    ],
)
def test_a_file_that_is_not_a_run_report_is_refused(text: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Report.from_json(text, source="runs/r/report.json")
    assert expected in str(caught.value) and "runs/r/report.json" in str(caught.value)


def test_runbook_report_refuses_a_broken_report_json(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "broken-run"
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text("[]")
    with pytest.raises(InvalidInput, match="not a run report"):
        api.report("broken-run", tmp_path, "md")


def test_data_check_of_a_report_written_before_data_check_detail() -> None:
    report = make_report()
    del report["data_check_detail"]
    report["outputs"]["restore@db"] = {"rows_before": {"orders": 4, "users": 2}, "rows_after": {"orders": 1}}
    check = Report.from_dict(report).data_check
    assert check.rows_lost and check.summary == "db: rows lost {'orders': 3, 'users': 2}"
    assert "- [ ] Data check: db: rows lost {'orders': 3, 'users': 2}" in render_markdown(report)


def test_report_files_are_written_private(tmp_path: Path) -> None:
    write_report(make_report(), tmp_path)
    formats.write_all(make_report(), tmp_path)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == dict.fromkeys(
        ["junit.xml", "report.html", "report.json", "report.md"], 0o600
    )


# ---------------------------------------------------------------- one real run (local connection, no lab)

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: formats, severity: SEV2, title: Report formats drill}
spec:
  params:
    token: {type: string, default: CANARY-5a4b3c2d1e, secret: true}
  steps:
    - id: write
      hosts: app
      uses: fixture_step
      with: {version_before: v1, version_after: v2, secret: "{{ params.token }}"}
    - id: break
      hosts: app
      uses: fixture_step
      with: {fail: true}
  on_failure:
    - {id: undo, hosts: app, uses: fixture_step, with: {version_after: v1}}
    - {id: check, hosts: app, uses: fixture_step, with: {healthy: true}}
"""


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from runner.paths import ROLES_DIR

    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    base = tmp_path_factory.mktemp("formats")
    path = base / "formats.yml"
    path.write_text(RUNBOOK)
    roles = [fixtures / "roles", ROLES_DIR]
    runbook = api.load(path, roles)
    result = api.run(
        runbook,
        api.resolve_params(runbook, []),
        RunOptions(inventory=fixtures / "local-inventory.yml", roles_paths=roles, state_dir=base / "state"),
    )
    assert result.status == "rolled_back", result.message
    report = json.loads((result.run_dir / "report.json").read_text())
    report["_run_dir"] = str(result.run_dir)
    return dict(report)


def test_real_report_validates_and_renders(real_report: dict[str, Any], tmp_path: Path) -> None:
    report = {k: v for k, v in real_report.items() if k != "_run_dir"}
    assert errors(report) == []
    written = formats.write_all(report, tmp_path)
    html = written["html"].read_text()
    junit = ET.fromstring(written["junit"].read_text())
    cases = junit.findall("testsuite/testcase")
    assert len(cases) == len(report["steps"]) == 8
    assert {c.get("classname") for c in cases} == {
        "formats.main.write",
        "formats.main.break",
        "formats.on_failure.undo",
        "formats.on_failure.check",
    }
    assert len(junit.findall("testsuite/testcase/failure")) == 2
    for s in report["steps"]:
        assert f'data-step="{s["id"]}" data-phase="{s["phase"]}" data-host="{s["host"]}"' in html
    for text in (html, written["junit"].read_text(), render_markdown(report)):
        assert "CANARY-5a4b3c2d1e" not in text


def test_write_report_then_write_all_side_by_side(real_report: dict[str, Any], tmp_path: Path) -> None:
    report = {k: v for k, v in real_report.items() if k != "_run_dir"}
    files = write_report(report, tmp_path)
    formats.write_all(report, files.directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "report.html", "report.json", "report.md"]


def test_the_post_mortem_tells_the_run_in_time_order_under_the_seed_headings() -> None:
    md = render_markdown(make_report())
    post_mortem = md.split("## Post-mortem", 1)[1].split("## Lessons learned", 1)[0]
    for heading in ("### Timeline", "### Root cause", "### Prevention"):
        assert heading in post_mortem, heading
    lines = [line for line in post_mortem.splitlines() if line.startswith("| 2026-")]
    rows = [line.split(" | ", 1)[1].removesuffix(" |") for line in lines]
    assert rows[0].startswith("run started by oncall@control")
    assert rows[-1] == "run ended: rolled_back"
    order = [next(i for i, r in enumerate(rows) if r.startswith(w)) for w in
             ("`swap` on app1 failed", "failure detected", "rollback (on_failure) started",
              "rollback (on_failure) ended: succeeded, service verified")]
    assert order == sorted(order)
    assert "INC-42" in post_mortem.split("### Root cause")[1]
    html = formats.render_html(make_report())
    assert "Post-mortem" in html and "Root cause" in html and "Prevention" in html
    assert "health <b>500</b>" not in html  # the timeline's messages are escaped too
