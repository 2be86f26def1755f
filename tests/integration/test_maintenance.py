"""The data rollback with writes stopped (seed 002 §3): the maintenance page is up on the lb (HTTP 503 through the
front) for exactly the restore, the data comes back, and a refused backup never stops the service. Checked from
outside: psql on the database, and a poller sending GET /health through the lb every 50 ms during the run."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from labtools import drop_databases, host_sh, lb_status, pg, run, shop_copy

pytestmark = pytest.mark.lab

DB = "rbtest_dr"
BACKUP_DIR = f"/var/backups/rbtest/{DB}"


def fingerprint() -> tuple[int, str, int, int]:
    with pg(DB) as conn:
        orders = conn.execute("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t").fetchone()
        wallet = conn.execute("SELECT count(*), sum(balance_cents) FROM wallet").fetchone()
    assert orders is not None and wallet is not None
    return orders[0], orders[1], wallet[0], wallet[1]


class Poller(threading.Thread):
    """Statuses seen through the lb while a run goes on (bounded: stops with the run, or after 10 minutes)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 600
        while not self.done.is_set() and time.monotonic() < deadline:
            self.seen.append(lb_status())
            time.sleep(0.05)


def runbook(state: Path, name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """The run, and the statuses the service answered through the lb while it went on."""
    poller = Poller()
    poller.start()
    try:
        result = run(state, name, "-p", f"database={DB}", "-p", f"backup_dir={BACKUP_DIR}", *args)
    finally:
        poller.done.set()
        poller.join()
    return result, poller.seen


@pytest.fixture
def scratch_shop(lab: object) -> Any:
    shop_copy(DB)
    yield DB
    drop_databases(DB)
    host_sh("db", f"rm -rf {BACKUP_DIR}")


def test_data_rollback_stops_writes_for_the_restore_only(scratch_shop: str, tmp_path: Path) -> None:
    backed_up, _ = runbook(tmp_path, "postgres-backup")
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    good = fingerprint()
    with pg(DB) as conn:
        conn.execute("DELETE FROM orders WHERE id % 4 = 0; UPDATE wallet SET balance_cents = 0")
    assert fingerprint() != good

    result, seen = runbook(tmp_path, "data-rollback", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fingerprint() == good
    assert 503 in seen, seen  # the maintenance page was up while the data was replaced
    assert seen[-1] == 200 and lb_status() == 200
    first, last = seen.index(503), len(seen) - 1 - seen[::-1].index(503)
    assert set(seen[first : last + 1]) == {503}, "writes came back in the middle of the restore"
    with pg() as conn:
        kept = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (DB + "__pre_%",)).fetchall()
    assert len(kept) == 1  # the replaced database is the safety copy


def test_a_refused_backup_never_stops_the_service(scratch_shop: str, tmp_path: Path) -> None:
    backed_up, _ = runbook(tmp_path, "postgres-backup")
    assert backed_up.returncode == 0
    host_sh("db", f"truncate -s 100 $(ls {BACKUP_DIR}/*.dump | tail -1)")
    before = fingerprint()
    result, seen = runbook(tmp_path, "data-rollback", "--yes")
    assert result.returncode == 1, result.stdout + result.stderr  # failed, service verified as it was
    assert 503 not in seen
    assert fingerprint() == before and lb_status() == 200
