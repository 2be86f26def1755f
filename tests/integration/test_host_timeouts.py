"""A step that times out, and a run that is cancelled (SIGTERM, SIGHUP, --timeout), stop their work on the host.

Ansible's task timeout and a cancelled ansible-playbook only stop the waiting on the control node; these tests
look from outside, on the db host, that pg_restore, psql and pg_dump really ended, that what the run says it left
is what it left, and that on_failure started only once the host work had ended.

The lab tests run the shipped runbooks through `runbook run` against the lab, on scratch databases rbtimeout_*
(never `shop`); a watcher on db lists the PostgreSQL client processes every 0.2 s during a run. One test runs on
localhost (connection: local): a plain command that Ansible's timeout gave up on is ended by the runner.

The in-place restore is made to outlast its step timeout by an expression index whose function sleeps 1 ms per
row unless the session says `rbtimeout.fast` (the seed does; pg_restore does not): the restore spends seconds
building it while the dump and the safety dump take no longer than for any small database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from labtools import INVENTORY, RUNBOOK, host_sh, latest_report, pg

from runner import lab as lab_module

ROOT = Path(__file__).resolve().parents[2]
BACKUPS = "/var/backups/rbtimeout"
PREFIX = "rbtimeout_"
CLIENTS = ("pg_restore", "pg_dump", "psql")

SLOW_INDEX = """
CREATE FUNCTION public.slow_key(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF coalesce(pg_catalog.current_setting('rbtimeout.fast', true), '') <> 'on' THEN
    PERFORM pg_catalog.pg_sleep(0.001);
  END IF;
  RETURN $1;
END $$;
SET rbtimeout.fast = 'on';
CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 12000) g;
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE INDEX events_slow ON events (public.slow_key(payload));
"""


# ------------------------------------------------------------------------------------------------ helpers


def scratch_database(name: str, slow_restore: bool = False) -> None:
    """A fresh copy of the shop seed (orders 1000 rows, wallet 100 rows); with slow_restore, the slow index."""
    with pg() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" OWNER lab')
    with pg(name) as conn:
        conn.execute((ROOT / "lab" / "shop-seed.sql").read_text().encode())
        if slow_restore:
            conn.execute(SLOW_INDEX.encode())


def fingerprint(name: str) -> dict[str, Any]:
    """Rows and an md5 of every row of each table (orders, wallet, events when there)."""
    out: dict[str, Any] = {}
    with pg(name) as conn:
        for table in ("orders", "wallet", "events"):
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM {table} t"
            ).fetchone()
            out[table] = tuple(row) if row else None
    return out


def clients_of(database: str) -> list[str]:
    """pg_restore / pg_dump / psql processes on db whose command line names the database."""
    found = []
    for line in host_sh("db", "ps -eo pid=,args=").splitlines():
        parts = line.split()
        if len(parts) > 1 and os.path.basename(parts[1]) in CLIENTS and database in line:
            found.append(line.strip())
    return found


def no_clients_within(database: str, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    left = clients_of(database)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = clients_of(database)
    return left


class ClientWatch:
    """Every 0.2 s on db: the client processes naming the database, with the host's time (one ssh session)."""

    def __init__(self, database: str) -> None:
        script = (
            "while true; do now=$(date +%s.%N); ps -eo args | grep -E '^(/[^ ]*/)?(pg_restore|pg_dump|psql) ' "
            f"| grep -F {database} | sed \"s/^/$now /\"; echo \"$now tick\"; sleep 0.2; done"
        )
        self.proc = subprocess.Popen(
            [*lab_module.ssh_argv("db"), "--", script], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.seen: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            stamp, _, what = line.strip().partition(" ")
            if what != "tick":
                self.seen.append((float(stamp), what))

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.thread.join(timeout=10)

    def last(self, tool: str) -> float | None:
        times = [t for t, what in self.seen if what.split(" ", 1)[0].endswith(tool)]
        return max(times) if times else None


def start_run(state: Path, runbook: Path | str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RUNBOOK_STATE_DIR": str(state)}
    return subprocess.Popen(
        [str(RUNBOOK), "run", str(runbook), "-i", INVENTORY, "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def wait_until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not seen within {seconds}s: {what}")


def lease_run_id() -> str | None:
    text = host_sh("db", "cat /var/lib/runbook/locks/host.json 2>/dev/null || true").strip()
    return json.loads(text).get("run_id") if text else None


@pytest.fixture
def scratch(lab: Any) -> Any:
    host_sh("db", f"rm -rf {BACKUPS}")
    yield
    with pg() as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",)):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    host_sh("db", f"rm -rf {BACKUPS}")


def backup(state: Path, database: str) -> None:
    proc = start_run(state, "runbooks/postgres-backup.yml", "-p", f"database={database}",
                     "-p", f"backup_dir={BACKUPS}/{database}")  # fmt: skip
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]


# -------------------------------------------------------------------------------------------------- tests


@pytest.mark.lab
def test_in_place_restore_timed_out_after_the_drop_is_stopped_and_put_back(scratch: Any, tmp_path: Path) -> None:
    db = PREFIX + "inplace"
    scratch_database(db, slow_restore=True)
    backup(tmp_path / "backup-state", db)
    with pg(db) as conn:  # what the restore would undo; the put-back must bring exactly this back
        conn.execute("DELETE FROM orders WHERE id % 4 = 0")
    before = fingerprint(db)
    runbook = tmp_path / "postgres-restore.yml"
    shipped = (ROOT / "runbooks" / "postgres-restore.yml").read_text()
    assert "timeout: 60m" in shipped
    runbook.write_text(shipped.replace("timeout: 60m", "timeout: 8s"))

    watch = ClientWatch(db)
    try:
        proc = start_run(tmp_path / "state", runbook, "--yes", "-p", f"database={db}", "-p", "mode=in_place",
                         "-p", f"backup_dir={BACKUPS}/{db}")  # fmt: skip
        out, err = proc.communicate(timeout=600)
    finally:
        watch.stop()
    report = latest_report(tmp_path / "state")
    steps = {(s["phase"], s["id"]): s for s in report["steps"]}
    restore = steps[("main", "restore")]
    assert restore["status"] == "failed", out[-3000:] + err[-3000:]
    message = restore["message"]
    # the module stopped itself at its deadline, after the drop, and said so; the role then put the safety copy back
    assert "stopped at its timeout" in message and "had been dropped" in message, message
    assert "was put back" in message and "was not changed" not in message, message
    assert fingerprint(db) == before  # the live database is whole again, as it was before the restore
    assert no_clients_within(db, 5) == []  # no pg_restore or psql of it is left on db
    # on_failure started only once the restore's processes (and the put-back's) had ended on the host
    tidy = steps[("on_failure", "tidy")]
    last_restore = watch.last("pg_restore")
    assert last_restore is not None, "the watcher saw the restore run"
    assert last_restore < epoch(tidy["started"]), (last_restore, tidy["started"])
    assert lease_run_id() != report["run_id"]  # the work ended: the lease was given back


@pytest.mark.lab
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signalled_run_leaves_no_process_of_it_on_the_host(scratch: Any, tmp_path: Path, sig: int) -> None:
    """A backup hung on a table lock (pg_dump waits forever): the run is signalled while pg_dump waits."""
    db = PREFIX + "hung"
    scratch_database(db)
    with pg(db) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        proc = start_run(tmp_path / "state", "runbooks/postgres-backup.yml", "-p", f"database={db}",
                         "-p", f"backup_dir={BACKUPS}/{db}")  # fmt: skip
        try:
            wait_until(lambda: any("pg_dump" in p for p in clients_of(db)), 120, "pg_dump waiting for the lock")
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, out[-3000:] + err[-3000:]
        assert clients_of(db) == []  # by the time the run says it stopped, nothing of it runs on db
        waiting = blocker.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (db,)
        ).fetchone()
        assert waiting == (0,)  # the server has no session of the dump left either
        blocker.execute("ROLLBACK")
    report = latest_report(tmp_path / "state")
    assert report["status"] == "interrupted"
    assert "pg_dump of" in report["status_detail"] and "the run that started it is gone" in report["status_detail"]
    assert "no backup was made" in report["status_detail"]
    assert host_sh("db", f"ls -A {BACKUPS}/{db} 2>/dev/null || true").strip() == ""  # no .partial left
    assert lease_run_id() != report["run_id"]


@pytest.mark.lab
def test_the_run_timeout_cancels_a_hung_step_and_stops_its_work(scratch: Any, tmp_path: Path) -> None:
    db = PREFIX + "deadline"
    scratch_database(db)
    watch = ClientWatch(db)
    with pg(db) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        proc = start_run(tmp_path / "state", "runbooks/postgres-backup.yml", "--timeout", "5s",
                         "-p", f"database={db}", "-p", f"backup_dir={BACKUPS}/{db}")  # fmt: skip
        try:
            out, err = proc.communicate(timeout=180)
        finally:
            watch.stop()
            if proc.poll() is None:
                proc.kill()
        blocker.execute("ROLLBACK")
    assert proc.returncode == 130, out[-3000:] + err[-3000:]
    assert time.monotonic() - started < 90
    assert watch.last("pg_dump") is not None, "pg_dump was hung on db when the time ran out"
    assert clients_of(db) == []
    report = latest_report(tmp_path / "state")
    assert report["status"] == "interrupted"
    assert "the run's timeout (5.0s) passed" in report["status_detail"]
    assert "pg_dump of" in report["status_detail"]


STUCK = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: stuck}
spec:
  lock: none
  steps:
    - {id: stuck, hosts: local1, uses: fixture_step, timeout: 2s, with: {sleep: 90}}
"""


def marked_processes(run_id: str) -> list[int]:
    """Processes on this machine carrying the run's RUNBOOK_WORK variable."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"RUNBOOK_WORK={run_id}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_a_command_ansible_gave_up_on_is_ended_by_the_runner(tmp_path: Path, fixtures: Path) -> None:
    """`sleep 90` run by ansible.builtin.command: Ansible's 2 s timeout leaves it running; the runner ends it."""
    path = tmp_path / "stuck.yml"
    path.write_text(STUCK)
    env = {**os.environ, "RUNBOOK_STATE_DIR": str(tmp_path / "state"), "RUNBOOK_ROLES_PATH": str(fixtures / "roles")}
    started = time.monotonic()
    proc = subprocess.run(
        [str(RUNBOOK), "run", str(path), "-i", str(fixtures / "local-inventory.yml")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert time.monotonic() - started < 60  # not the 90 s of the sleep
    report = latest_report(tmp_path / "state")
    assert marked_processes(report["run_id"]) == []
    assert "on local1: host work of run" in report["status_detail"]
    assert re.search(r"ended \d process\(es\) of the run: .*sleep 90", report["status_detail"]), report["status_detail"]
