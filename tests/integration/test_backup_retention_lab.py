"""backup-cleanup against the lab: real backups of a scratch database on db (made by the postgres-backup runbook,
then aged with touch -d), cleaned up under several policies. Exactly the planned backups go; the newest is restored
afterwards; the offsite copies verify on the backup host; a corrupt offsite copy is found and sent again; a held
lease of the database's host stops the cleanup with exit 4 naming the holder; a kill -9 of `runbook run` during the
cleanup leaves no backup that looks complete but is not, and the next run finishes the plan."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from labtools import INVENTORY, RUNBOOK, drop_databases, host_sh, pg, run, runbook_cli, shop_copy, step_outputs

pytestmark = pytest.mark.lab

DB = "rbret_cleanup"
DIR = f"/var/backups/rbret/{DB}"
OFFSITE = f"/var/backups/runbook/offsite/db/postgres/{DB}"
AGES = (0, 3, 10, 20, 40)  # days, newest first


def names_in(host: str, directory: str) -> list[str]:
    listing = host_sh(host, f"ls -1 {directory} 2>/dev/null || true").split()
    return sorted(n[: -len(".manifest.json")] for n in listing if n.endswith(".manifest.json"))


@pytest.fixture(scope="module")
def backups(lab: object, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Five verified backups of the scratch database, newest first, aged 0, 3, 10, 20 and 40 days."""
    state = tmp_path_factory.mktemp("state")
    shop_copy(DB)
    host_sh("db", f"rm -rf {DIR}")
    host_sh("backup", f"rm -rf {OFFSITE}")
    for _ in AGES:
        made = run(state, "postgres-backup", "-p", f"database={DB}", "-p", f"backup_dir={DIR}")
        assert made.returncode == 0, made.stdout + made.stderr
        time.sleep(1.1)  # backup names carry the second they were taken
    names = sorted(names_in("db", DIR), reverse=True)
    assert len(names) == len(AGES)
    yield names
    drop_databases("rbret_")
    host_sh("db", "rm -rf /var/backups/rbret")
    host_sh("backup", f"rm -rf {OFFSITE}")


def age(names: list[str]) -> None:
    for name, days in zip(names, AGES, strict=True):
        host_sh("db", f"touch -d '{days} days ago' {DIR}/{name}.dump")


def cleanup(state: Path, *params: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["-p", f"database={DB}", "-p", f"backup_dir={DIR}", *params]
    return run(state, "backup-cleanup", *args, *(["--check"] if check else []))


def planned(state: Path) -> dict[str, list[str]]:
    """backup -> actions, from the plan lines the run recorded ("copy+delete  NAME  (rule)")."""
    lines = step_outputs(state, "cleanup")["plan"]
    return {line.split()[1]: [] if line.split()[0] == "keep" else line.split()[0].split("+") for line in lines}


@pytest.fixture
def scratch(backups: list[str]) -> Any:
    return backups



def test_cleanup_deletes_exactly_the_plan_and_the_newest_restores(scratch: list[str], tmp_path: Path) -> None:
    names = scratch
    age(names)
    policy = ("-p", "keep_last=2", "-p", "keep_days=15", "-p", "compress_after_days=7")
    shown = cleanup(tmp_path, *policy, check=True)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    plan = planned(tmp_path)
    print("\n".join(step_outputs(tmp_path, "cleanup")["plan"]))
    assert names_in("db", DIR) == sorted(names)  # check mode changed nothing
    assert plan == {names[0]: ["copy"], names[1]: ["copy"], names[2]: ["compress", "copy"],
                    names[3]: ["copy", "delete"], names[4]: ["copy", "delete"]}

    done = cleanup(tmp_path, *policy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert planned(tmp_path) == plan  # the real run planned and executed the same
    assert names_in("db", DIR) == sorted(names[:3])
    manifest = json.loads(host_sh("db", f"cat {DIR}/{names[2]}.manifest.json"))
    assert manifest["compression"] in ("zstd", "gzip") and manifest["original"]["sha256"]
    for name in names[:3]:
        record = json.loads(host_sh("db", f"cat {DIR}/{name}.manifest.json"))["offsite"]
        assert record["host"] == "backup" and record["path"].startswith(OFFSITE)
        sent = host_sh("backup", f"sha256sum {record['path']}").split()[0]
        assert sent == record["sha256"]

    # The same policy on the backup host: its copies of the deleted backups go too (their mtime travelled).
    assert names_in("backup", OFFSITE) == sorted(names[:3])
    again = cleanup(tmp_path, *policy, check=True)
    assert again.returncode == 0 and all(not acts for acts in planned(tmp_path).values()), planned(tmp_path)

    with pg(DB) as conn:  # the scratch database loses rows; the newest backup must bring them back
        conn.execute("DELETE FROM orders WHERE id % 2 = 0")
    restored = run(tmp_path, "postgres-restore", "--yes", "-p", f"database={DB}", "-p", f"backup_dir={DIR}",
                   "-p", f"backup={names[0]}", "-p", "mode=in_place")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    with pg(DB) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1000,)

    # The compressed backup restores too: decoded beside it, proved equal to the original, read, removed.
    with pg(DB) as conn:
        conn.execute("DELETE FROM orders WHERE id % 3 = 0")
    restored = run(tmp_path, "postgres-restore", "--yes", "-p", f"database={DB}", "-p", f"backup_dir={DIR}",
                   "-p", f"backup={names[2]}")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    with pg(DB) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1000,)
    assert names[2] + ".dump" in step_outputs(tmp_path, "restore")["restored"]
    assert [n for n in host_sh("db", f"ls -A {DIR}").split() if ".decode-" in n or n.startswith(".reading-")] == []


def test_a_corrupt_offsite_copy_is_found_and_sent_again(scratch: list[str], tmp_path: Path) -> None:
    newest = names_in("db", DIR)[-1]
    host_sh("backup", f"truncate -s 100 {OFFSITE}/{newest}.dump")
    done = cleanup(tmp_path, "-p", "keep_last=3", "-p", "keep_days=15")
    assert done.returncode == 0, done.stdout + done.stderr
    assert planned(tmp_path)[newest] == ["copy"]
    local = host_sh("db", f"sha256sum {DIR}/{newest}.dump").split()[0]
    assert host_sh("backup", f"sha256sum {OFFSITE}/{newest}.dump").split()[0] == local


def test_a_held_lease_stops_the_cleanup_with_exit_4_naming_the_holder(scratch: list[str], tmp_path: Path) -> None:
    # A backup on the same host holds the db host's lease while it runs: one of a database big enough that the
    # dump outlasts the cleanup's start (the lease is the host's, whatever database the backup is of).
    big = "rbret_big"
    shop_copy(big)
    with pg(big) as conn:
        conn.execute("CREATE TABLE ballast AS SELECT g AS id, md5(g::text) AS a, md5((g + 1)::text) AS b"
                     " FROM generate_series(1, 1500000) g")  # fmt: skip
    backup = subprocess.Popen(
        [str(RUNBOOK), "run", "runbooks/postgres-backup.yml", "-i", INVENTORY, "-p", f"database={big}", "-p",
         "backup_dir=/var/backups/rbret/big"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RUNBOOK_STATE_DIR": str(tmp_path / "other")},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "pg_dump" not in host_sh("db", "ps -eo args"):
            time.sleep(0.2)  # the backup holds the lease and dumps
        refused = cleanup(tmp_path, "-p", "keep_last=3")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "held by run postgres-backup-" in refused.stderr
    finally:
        out, _ = backup.communicate(timeout=300)
    assert backup.returncode == 0, out


def test_kill_9_during_cleanup_leaves_nothing_half_done_and_the_next_run_finishes(
        scratch: list[str], tmp_path: Path) -> None:
    names = sorted(names_in("db", DIR), reverse=True)
    for name, days in zip(names, (0, 30, 40, 50), strict=False):  # the data file its manifest names: compressed or not
        data = json.loads(host_sh("db", f"cat {DIR}/{name}.manifest.json"))["data"]
        host_sh("db", f"touch -c -d '{days} days ago' {DIR}/{data}")
    args = ["run", "runbooks/backup-cleanup.yml", "-i", INVENTORY, "-p", f"database={DB}", "-p",
            f"backup_dir={DIR}", "-p", "keep_last=1", "-p", "keep_days=5", "-p", "compress_after_days=1"]
    victim = subprocess.Popen([str(RUNBOOK), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RUNBOOK_STATE_DIR": str(tmp_path)}, start_new_session=True)
    time.sleep(6)  # inside the cleanup step (fetch/copy/delete)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    time.sleep(2)
    killed = next((tmp_path / "runs").iterdir()).name
    resumed = runbook_cli(tmp_path, "resume", killed, "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not list(Path(tempfile.gettempdir()).glob(f"runbook-offsite-{killed}-*"))  # no backup data left here
    for name in names_in("db", DIR):  # whatever has a manifest verifies, or says it is incomplete
        manifest = json.loads(host_sh("db", f"cat {DIR}/{name}.manifest.json"))
        present = host_sh("db", f"ls {DIR}").split()
        if manifest["data"] in present:
            got = host_sh("db", f"sha256sum {DIR}/{manifest['data']}").split()[0]
            assert got == manifest["sha256"], f"{name} looks complete but is not"
    # The killed run's lease names a dead holder on this control node: the next run takes it over.
    done = cleanup(tmp_path, "-p", "keep_last=1", "-p", "keep_days=5", "-p", "compress_after_days=1")
    assert done.returncode == 0, done.stdout + done.stderr
    latest = host_sh("db", f"cat {DIR}/.latest").strip().rsplit("/", 1)[-1]  # never deleted, whatever its age
    assert names_in("db", DIR) == sorted({names[0], latest})
    assert hashlib.sha256(b"").hexdigest() not in host_sh("db", f"sha256sum {DIR}/*")
