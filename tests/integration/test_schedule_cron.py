"""A schedule fires under the real cron daemon and its run lands in history with trigger schedule:<name>.

Runs a tiny local runbook (tests/fixtures/schedule/tick.yml, local connection: it touches no lab host). Installs
Debian's cron when missing and starts the daemon when it is not running (and leaves it running)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from runner import cli
from runner.records import history

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _cron_running() -> bool:
    return subprocess.run(["pgrep", "-x", "cron"], capture_output=True, check=False).returncode == 0


@pytest.fixture
def cron_daemon() -> None:
    if os.geteuid() != 0:
        pytest.skip("cron.d entries need root")
    if not shutil.which("cron"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "cron"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True)
    if not _cron_running():
        subprocess.run(["cron"], check=True)
    assert _cron_running()


def test_schedule_fires_and_lands_in_history(cron_daemon: None, tmp_path: Path) -> None:
    state = tmp_path / "state"
    name = f"rbsched-{os.getpid()}"
    argv = ["schedule", "add", name, str(FIXTURES / "schedule" / "tick.yml"), "-i",
            str(FIXTURES / "local-inventory.yml"), "-p", f"out={tmp_path}/out", "--roles-path",
            str(FIXTURES / "roles"), "--cron", "* * * * *", "--state-dir", str(state)]
    assert cli.main(argv) == 0
    try:
        deadline = time.monotonic() + 130
        rows: list[history.RunRow] = []
        while time.monotonic() < deadline:
            rows = [r for r in history.list_runs(state) if r.trigger == f"schedule:{name}" and r.finished]
            if rows:
                break
            time.sleep(5)
        log = state / "schedules" / f"{name}.log"
        assert rows, f"no scheduled run in history; log: {log.read_text() if log.exists() else '(none)'}"
        assert rows[0].status == "succeeded"
    finally:
        assert cli.main(["schedule", "remove", name, "--state-dir", str(state)]) == 0
    assert not Path(f"/etc/cron.d/runbook-{name}").exists()
