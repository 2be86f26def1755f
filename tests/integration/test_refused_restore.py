"""A restore the runbook refuses (no backup, a corrupt one) says so: status failed, nothing changed, the service
verified as it was (exit 1) — never "on_failure restored the service". The shipped postgres-restore runbook on
the lab, on a scratch copy of shop (rbtest_refused), checked from outside with psql."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from labtools import drop_databases, host_sh, latest_report, pg, run, shop_copy

pytestmark = pytest.mark.lab

DB = "rbtest_refused"
BACKUP_ROOT = "/var/backups/rbtest-refused"
BACKUP_DIR = f"{BACKUP_ROOT}/{DB}"


@pytest.fixture
def scratch(lab: object) -> Any:
    shop_copy(DB)
    host_sh("db", f"rm -rf {BACKUP_ROOT}")
    yield DB
    drop_databases(DB)
    host_sh("db", f"rm -rf {BACKUP_ROOT}")


def fingerprint() -> tuple[Any, ...]:
    with pg(DB) as conn:
        orders = conn.execute("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t").fetchone()
        wallet = conn.execute("SELECT count(*), sum(balance_cents) FROM wallet").fetchone()
    assert orders is not None and wallet is not None
    return (*orders, *wallet)


def databases_beside() -> list[str]:
    with pg() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (DB + "__%",)).fetchall()
    return [row[0] for row in rows]


def refused(state: Path, why: str) -> dict[str, Any]:
    before = fingerprint()
    result = run(state, "postgres-restore", "--yes", "-p", f"database={DB}", "-p", f"backup_dir={BACKUP_DIR}")
    assert result.returncode == 1, result.stdout + result.stderr  # failed; the service verified as it was
    report = latest_report(state)
    detail = report["status_detail"]
    assert report["status"] == "failed", detail
    assert detail.startswith("step 'check' refused on db: ") and why in detail, detail
    assert detail.endswith("; nothing was changed; on_failure verified the service"), detail
    assert "restored" not in detail
    assert report["on_failure"]["verified"] and report["on_failure"]["restored"] == []
    assert f"status: failed — {detail}" in result.stdout
    assert fingerprint() == before and databases_beside() == []
    return report


def test_a_refused_restore_says_nothing_was_changed(scratch: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    refused(state, "backup refused: found check failed: no finished backup")

    backed_up = run(state, "postgres-backup", "-p", f"database={DB}", "-p", f"backup_dir={BACKUP_DIR}")
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    host_sh("db", f"truncate -s 100 $(ls {BACKUP_DIR}/*.dump | tail -1)")
    report = refused(state, "backup refused: ")
    assert json.dumps(report).count("restored the service") == 0
