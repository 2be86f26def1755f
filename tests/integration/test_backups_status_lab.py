"""`runbook backups status` against the lab's db host: real backups made by the postgres-backup runbook, one then
damaged on the host; the status must name the newest backup that still verifies and its age."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from labtools import INVENTORY, drop_databases, host_sh, run, runbook_cli, shop_copy

pytestmark = pytest.mark.lab

DB = "rbtest_status"
ROOT_DIR = "/var/backups/rbtest-status"


def db_sh(command: str) -> str:
    return host_sh("db", command)


def status(state: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = runbook_cli(state, "backups", "status", "-i", INVENTORY, "--dir", ROOT_DIR, "--format", "json", *args)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def scratch(lab: object) -> Any:
    shop_copy(DB)
    db_sh(f"rm -rf {ROOT_DIR}")
    yield
    drop_databases(DB)
    db_sh(f"rm -rf {ROOT_DIR}")


def test_status_names_the_newest_backup_that_verifies_and_its_age(scratch: Any, tmp_path: Path) -> None:
    for _ in range(2):
        made = run(tmp_path, "postgres-backup", "-p", f"database={DB}", "-p", f"backup_dir={ROOT_DIR}/{DB}")
        assert made.returncode == 0, made.stdout + made.stderr
        time.sleep(1.1)  # backup names carry the second they were taken
    names = sorted(
        n[: -len(".manifest.json")] for n in db_sh(f"ls {ROOT_DIR}/{DB}").split() if n.endswith(".manifest.json")
    )
    assert len(names) == 2
    older, newest = names

    rc, data = status(tmp_path, "--max-age", "1h")
    assert rc == 0, data
    [entry] = data["databases"]
    assert (entry["host"], entry["database"], entry["verified"], entry["newest_ok"]) == ("db", DB, newest, True)
    assert 0 <= entry["age_s"] < 3600 and entry["verified_size"] > 0

    db_sh(f"truncate -s 100 {ROOT_DIR}/{DB}/{newest}.dump")
    rc, data = status(tmp_path, "--max-age", "1h")
    [entry] = data["databases"]
    assert rc == 1 and entry["verified"] == older and entry["newest"] == newest and entry["newest_ok"] is False
    assert "fails verification (size" in entry["problem"], entry["problem"]

    db_sh(f"truncate -s 100 {ROOT_DIR}/{DB}/{older}.dump")
    rc, data = status(tmp_path)
    assert (
        rc == 1 and data["databases"][0]["verified"] == "" and "no backup verifies" in data["databases"][0]["problem"]
    )

    text = runbook_cli(tmp_path, "backups", "status", "-i", INVENTORY, "--dir", ROOT_DIR)
    assert text.returncode == 1 and DB in text.stdout and "no backup verifies" in text.stdout


SCHED_DB = "rbsched_status"
SCHED_DIR = "/var/backups/rbsched-status"
OFFSITE_DIR = "/var/backups/rbsched-offsite"


@pytest.fixture
def offsite_scratch(lab: object) -> Any:
    shop_copy(SCHED_DB)
    db_sh(f"rm -rf {SCHED_DIR}")
    host_sh("backup", f"rm -rf {OFFSITE_DIR}")
    yield
    drop_databases(SCHED_DB)
    db_sh(f"rm -rf {SCHED_DIR}")
    host_sh("backup", f"rm -rf {OFFSITE_DIR}")


def _set_manifest(path: str, **keys: object) -> None:
    script = (
        "import json,sys; p=sys.argv[1]; m=json.load(open(p)); m.update(json.loads(sys.argv[2])); "
        "json.dump(m, open(p, 'w'))"
    )
    db_sh(f"python3 -c \"{script}\" {path} '{json.dumps(keys)}'")


def test_status_shows_size_compression_and_offsite_state(offsite_scratch: Any, tmp_path: Path) -> None:
    made = run(tmp_path, "postgres-backup", "-p", f"database={SCHED_DB}", "-p", f"backup_dir={SCHED_DIR}/{SCHED_DB}")
    assert made.returncode == 0, made.stdout + made.stderr
    [name] = [n[: -len(".manifest.json")] for n in db_sh(f"ls {SCHED_DIR}/{SCHED_DB}").split()
              if n.endswith(".manifest.json")]
    dump = f"{SCHED_DIR}/{SCHED_DB}/{name}.dump"
    manifest = f"{SCHED_DIR}/{SCHED_DB}/{name}.manifest.json"
    args = ("--dir", SCHED_DIR, "--max-age", "1h", "--state-dir", str(tmp_path))

    rc, data = status(tmp_path, *args)
    [entry] = data["databases"]
    assert rc == 0 and entry["offsite"] == "missing" and entry["verified_size"] > 0
    assert entry["compression"] in ("gzip", "zstd", "lz4"), entry  # pg_dump's own compression (role default auto)

    sha = db_sh(f"sha256sum {dump}").split()[0]
    host_sh("backup", f"mkdir -p {OFFSITE_DIR} && base64 -d > {OFFSITE_DIR}/{name}.dump",
            stdin=db_sh(f"base64 {dump}"))
    record = {"host": "backup", "path": f"{OFFSITE_DIR}/{name}.dump", "sha256": sha, "verified_at": "2026-01-01"}
    _set_manifest(manifest, offsite=record, compression="zstd")
    rc, data = status(tmp_path, *args)
    [entry] = data["databases"]
    assert entry["verified"] == name, entry
    assert (entry["offsite"], entry["compression"]) == ("verified", "zstd")

    host_sh("backup", f"echo x >> {OFFSITE_DIR}/{name}.dump")
    _rc, data = status(tmp_path, *args)
    assert data["databases"][0]["offsite"] == "corrupt"

    host_sh("backup", f"rm {OFFSITE_DIR}/{name}.dump")
    _rc, data = status(tmp_path, *args)
    assert data["databases"][0]["offsite"] == "missing"

    metrics = runbook_cli(tmp_path, "metrics", "--format", "prometheus", "--state-dir", str(tmp_path))
    assert f'runbook_backup_offsite_verified{{host="db",database="{SCHED_DB}"}} 0' in metrics.stdout
    assert f'runbook_backup_age_seconds{{host="db",database="{SCHED_DB}"}}' in metrics.stdout
