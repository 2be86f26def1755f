"""cache_flush against the lab's real Redis on db (127.0.10.21:6379), checked with redis-cli on the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner import lab as lab_module

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = str(ROOT / "inventories" / "lab" / "hosts.yml")
RUNBOOK = Path(sys.executable).parent / "runbook"


def redis(*args: str, db: int = 0) -> str:
    command = " ".join(["redis-cli", "-h", "127.0.10.21", "-n", str(db), *args])
    proc = subprocess.run(
        [*lab_module.ssh_argv("db"), "--", command], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def fill() -> None:
    """db 0: 1500 catalog keys (more than one SCAN batch) and 20 sessions; db 1: 5 keys of another app."""
    script = "".join(f"SET catalog:page:{i} cached-{i}\n" for i in range(1500))
    script += "".join(f"SET session:{i} user-{i}\n" for i in range(20))
    proc = subprocess.run(
        [
            *lab_module.ssh_argv("db"),
            "--",
            "redis-cli -h 127.0.10.21 -n 0 FLUSHDB >/dev/null && redis-cli -h 127.0.10.21 -n 0 >/dev/null",
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    redis("FLUSHDB", db=1)
    for i in range(5):
        redis("SET", f"other:{i}", "x", db=1)


def runbook(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNBOOK_STATE_DIR": str(state)}
    return subprocess.run(
        [str(RUNBOOK), "run", "runbooks/cache-flush.yml", "-i", INVENTORY, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def outputs(state: Path, step: str) -> dict[str, Any]:
    report = sorted((state / "runs").glob("*/report.json"), key=lambda p: p.stat().st_mtime)[-1]
    journal = report.parent / "journal.jsonl"
    found: dict[str, Any] = {}
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("kind") == "step_result" and entry.get("step_id") == step and entry.get("outputs"):
            found = entry["outputs"]
    return found


def test_cache_flush_by_pattern_then_whole_database(lab: object, tmp_path: Path) -> None:
    fill()
    assert redis("DBSIZE") == "1520"

    dry = runbook(tmp_path, "-p", "pattern=catalog:*", "--check")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert redis("DBSIZE") == "1520"

    by_pattern = runbook(tmp_path, "-p", "pattern=catalog:*")
    assert by_pattern.returncode == 0, by_pattern.stdout + by_pattern.stderr
    assert redis("DBSIZE") == "20"
    assert redis("GET", "session:7") == "user-7"
    assert redis("DBSIZE", db=1) == "5"
    found = outputs(tmp_path, "flush")
    assert (found["keys_before"], found["removed"], found["keys_after"]) == (1500, 1500, 0), found

    whole = runbook(tmp_path)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert redis("DBSIZE") == "0"
    assert redis("DBSIZE", db=1) == "5"  # the other database is left alone
    redis("FLUSHDB", db=1)
