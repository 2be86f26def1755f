"""What the lab tests of the runbooks share: commands on lab hosts, the service through the lb, `runbook run` as an
operator types it, and what a run recorded (its report and the step outputs in its journal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from runner import lab as lab_module

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = str(ROOT / "inventories" / "lab" / "hosts.yml")
RUNBOOK = Path(sys.executable).parent / "runbook"
LB_HEALTH = "http://127.0.10.41:8080/health"


def host_sh(host: str, command: str, stdin: str | None = None) -> str:
    """stdout of a shell command on a lab host over ssh; fails the test when it fails."""
    proc = subprocess.run(
        [*lab_module.ssh_argv(host), "--", command], input=stdin, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{host}: {command}: {proc.stderr}"
    return proc.stdout


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return int(exc.code), json.loads(body or b"{}")
        except ValueError:
            return int(exc.code), {}


def lb_status() -> int:
    return get_json(LB_HEALTH)[0]


def runbook_cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNBOOK_STATE_DIR": str(state)}
    return subprocess.run([str(RUNBOOK), *args], capture_output=True, text=True, env=env, timeout=600, check=False)


def run(state: Path, runbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`runbook run runbooks/NAME.yml -i <lab inventory> ARGS` (a path ending in .yml is taken as it is)."""
    path = runbook if runbook.endswith(".yml") else f"runbooks/{runbook}.yml"
    return runbook_cli(state, "run", path, "-i", INVENTORY, *args)


def latest_report(state: Path) -> dict[str, Any]:
    reports = sorted((state / "runs").glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    data: dict[str, Any] = json.loads(reports[-1].read_text())
    return data


def step_outputs(state: Path, step: str) -> dict[str, Any]:
    """Outputs the latest run recorded for a step (its last host), from the run's journal."""
    journal = sorted((state / "runs").glob("*/journal.jsonl"), key=lambda p: p.stat().st_mtime)[-1]
    found: dict[str, Any] = {}
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("kind") == "step_result" and entry.get("step_id") == step:
            found = entry.get("outputs") or {}
    return found


def step_statuses(report: dict[str, Any]) -> dict[str, str]:
    """'phase:step@host' -> status."""
    return {f"{s['phase']}:{s['id']}@{s['host']}": s["status"] for s in report["steps"]}


def pg(dbname: str = "postgres") -> psycopg.Connection[Any]:
    """The lab's PostgreSQL on db as its superuser (lab/lab), autocommit."""
    return psycopg.connect(host="127.0.10.21", user="lab", password="lab", dbname=dbname, autocommit=True)


def shop_copy(name: str) -> None:
    """A fresh database `name` holding the lab's shop seed (orders 1000 rows, wallet 100 rows)."""
    with pg() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" OWNER lab')
    with pg(name) as conn:
        conn.execute((ROOT / "lab" / "shop-seed.sql").read_text().encode())


def drop_databases(prefix: str) -> None:
    """Drop every database whose name starts with `prefix` (what a test and its restores left)."""
    with pg() as conn:
        for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
