"""report.html in a real browser: headless Debian chromium loads the page of a real (local) run.

Needs the `chromium` Debian package. Without it the test skips, except with RUNBOOK_REQUIRE_LAB=1 (CI), where
that is a failure. The run itself uses ansible's local connection, so the lab is not needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from runner import api
from runner.engine.runflow import RunOptions
from runner.paths import ROLES_DIR
from runner.records import formats

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: html-drill, severity: SEV1, title: HTML report drill}
spec:
  params:
    reason: {type: string, default: "drill: broken release"}
  steps:
    - id: deploy
      hosts: app
      uses: fixture_step
      with: {version_before: v1, version_after: v2}
    - id: health
      hosts: app
      uses: fixture_step
      with: {fail: true}
  on_failure:
    - {id: rollback, hosts: app, uses: fixture_step, with: {version_after: v1}}
    - {id: verify, hosts: app, uses: fixture_step, with: {healthy: true}}
"""


def _require() -> bool:
    return os.environ.get("RUNBOOK_REQUIRE_LAB", "") not in ("", "0", "false", "no")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (apt-get install -y chromium)"
    if _require():
        pytest.fail(f"{message}; required with RUNBOOK_REQUIRE_LAB=1", pytrace=False)
    pytest.skip(message)


def _browser(binary: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.step_rows: list[dict[str, str | None]] = []
        self.timeline_rows: list[dict[str, str | None]] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "step-row" in classes:
            self.step_rows.append(a)
        if "tl-row" in classes:
            self.timeline_rows.append(a)
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                self.external.append(value)


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    base = tmp_path_factory.mktemp("html")
    path = base / "html-drill.yml"
    path.write_text(RUNBOOK)
    roles = [FIXTURES / "roles", ROLES_DIR]
    runbook = api.load(path, roles)
    result = api.run(
        runbook,
        api.resolve_params(runbook, []),
        RunOptions(inventory=FIXTURES / "local-inventory.yml", roles_paths=roles, state_dir=base / "state"),
    )
    assert result.status == "rolled_back", result.message
    report = json.loads((result.run_dir / "report.json").read_text())
    written = formats.write_all(report, result.run_dir)
    return report, written["html"]


def test_report_html_in_headless_chromium(run_report: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    binary = _chromium()
    report, html_path = run_report
    url = html_path.resolve().as_uri()

    dom = _browser(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<html" in dom.stdout, dom.stderr[-2000:]
    parsed = _Rows()
    parsed.feed(dom.stdout)

    expected = [(s["id"], s["phase"], s["host"], s["status"]) for s in report["steps"]]
    assert [(r["data-step"], r["data-phase"], r["data-host"], r["data-status"]) for r in parsed.step_rows] == expected
    # timeline: main steps first, then on_failure, every step x host once
    timeline = [(r["data-step"], r["data-phase"], r["data-host"], r["data-status"]) for r in parsed.timeline_rows]
    assert sorted(timeline) == sorted(expected)
    phases = [r[1] for r in timeline]
    assert phases == sorted(phases, key=lambda p: p != "main")
    assert {r[3] for r in timeline} == {"succeeded", "failed"}
    assert {r[0] for r in timeline} == {"deploy", "health", "rollback", "verify"}
    assert {r[2] for r in timeline} == {"local1", "local2"}
    assert parsed.external == []
    assert 'id="run-status" data-status="rolled_back"' in dom.stdout
    assert "drill: broken release" in dom.stdout

    screenshot = tmp_path / "report.png"
    shot = _browser(binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,900", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"report.html screenshot: {screenshot}")
