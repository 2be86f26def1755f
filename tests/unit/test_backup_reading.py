"""A restore reading a backup (module_utils/backup_reading) on real files: the .reading marker holds the backup
against retention while its process lives, a compressed backup is read through a decoded copy proved equal to the
original, and nothing of either is left afterwards."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from opsmodule import load

retention = load("backup_retention")
backup_reading = importlib.import_module("ansible_collections.runbook.ops.plugins.module_utils.backup_reading")
retention_files = retention.rf
finalize = load("backup_finalize")
DAY = 86400


def make_backup(directory: Path, name: str, days: float, data: bytes) -> None:
    (directory / f"{name}.dump.partial").write_bytes(data)
    finalize.finalize({"dir": str(directory), "name": name, "format": "custom", "kind": "postgres",
                       "database": "rbread", "metadata": {}, "update_latest": False, "marker": ".latest"})
    when = time.time() - days * DAY
    os.utime(directory / f"{name}.dump", (when, when))


def plan(directory: Path) -> dict[str, Any]:
    return retention.run({"action": "plan", "dir": str(directory), "kind": "postgres", "pattern": "",
                          "marker": ".latest", "policy": {"keep_last": 1, "compress_after_days": 3, "offsite": False},
                          "offsite_states": {}, "offsite_records": {}, "expected": {}, "incoming": [],
                          "phase": "delete"})["plan_actions"]


def compressed_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes) -> Path:
    monkeypatch.setattr(retention.rf, "compressor", lambda: "gzip")
    make_backup(tmp_path, "old", 10, data)
    make_backup(tmp_path, "new", 0, b"newest")
    retention.run({"action": "apply", "phase": "compress", "dir": str(tmp_path), "kind": "postgres", "pattern": "",
                   "marker": ".latest",
                   "policy": {"keep_last": 1, "keep_days": 30, "compress_after_days": 3, "offsite": False},
                   "offsite_states": {}, "offsite_records": {}, "expected": {}, "incoming": []})
    assert (tmp_path / "old.dump.gz").exists() and not (tmp_path / "old.dump").exists()
    return tmp_path / "old.manifest.json"


def test_a_compressed_backup_is_read_through_a_copy_equal_to_the_original(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(300_000)
    manifest = compressed_backup(tmp_path, monkeypatch, data)
    with backup_reading.reading(str(tmp_path / "old.dump.gz"), str(manifest)) as plain:
        assert Path(plain).read_bytes() == data
        assert Path(plain).parent == tmp_path and Path(plain).name.startswith(".")  # hidden: no backup set lists it
        assert backup_reading.being_read(str(tmp_path), "old")
        assert plan(tmp_path)["old"] == []  # retention keeps what a restore reads, whatever the policy says
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "new.dump", "new.manifest.json", "old.dump.gz", "old.manifest.json"]
    assert not backup_reading.being_read(str(tmp_path), "old")
    assert plan(tmp_path)["old"] == ["delete"]


def test_a_compressed_copy_that_does_not_decode_to_the_original_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = compressed_backup(tmp_path, monkeypatch, b"the original rows" * 1000)
    (tmp_path / "old.dump.gz").write_bytes(gzip.compress(b"other rows"))
    with pytest.raises(backup_reading.NotReadable) as refused, \
            backup_reading.reading(str(tmp_path / "old.dump.gz"), str(manifest)):
        pytest.fail("a copy that is not the original was handed to the restore")
    assert refused.value.check == "decode" and "the original was" in refused.value.detail
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch, no marker left


def test_a_plain_backup_is_read_where_it_is(tmp_path: Path) -> None:
    make_backup(tmp_path, "b1", 1, b"rows")
    with backup_reading.reading(str(tmp_path / "b1.dump"), str(tmp_path / "b1.manifest.json")) as plain:
        assert plain == str(tmp_path / "b1.dump")
        marker = [p for p in tmp_path.iterdir() if p.name.startswith(".reading-b1@")]
        assert len(marker) == 1 and json.loads(marker[0].read_text())["pid"] == os.getpid()
        assert marker[0].stat().st_mode & 0o777 == 0o600


def test_the_marker_of_a_killed_restore_stops_holding_and_one_made_by_hand_always_holds(tmp_path: Path) -> None:
    make_backup(tmp_path, "b1", 40, b"one")
    make_backup(tmp_path, "b2", 30, b"two")
    make_backup(tmp_path, "b3", 0, b"three")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = backup_reading._start_time(child.pid)
    (tmp_path / f".reading-b1@{child.pid}").write_text(json.dumps({"pid": child.pid, "started": started}))
    (tmp_path / ".reading-b2").write_text("")
    assert plan(tmp_path) == {"b3": [], "b2": [], "b1": []}
    child.kill()
    child.wait()
    assert plan(tmp_path) == {"b3": [], "b2": [], "b1": ["delete"]}
    # a pid that lives again in another process does not hold either: the start time names the process
    (tmp_path / f".reading-b1@{os.getpid()}").write_text(json.dumps({"pid": os.getpid(), "started": 1}))
    assert not backup_reading.being_read(str(tmp_path), "b1")


def test_an_offsite_record_made_before_compression_says_it_holds_the_original(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention.rf, "compressor", lambda: "gzip")
    make_backup(tmp_path, "old", 10, b"data" * 100)
    make_backup(tmp_path, "new", 0, b"newest")
    sent = hashlib.sha256(b"data" * 100).hexdigest()
    record = {"host": "backup", "path": "/offsite/old.dump", "sha256": sent, "verified_at": "2026-12-01T00:00:00Z"}
    retention_files.record_offsite(str(tmp_path), "old", record)
    old = {b["name"]: b for b in retention_files.read_managed(str(tmp_path), "postgres", ".latest", {})}["old"]
    retention_files.compress(str(tmp_path), old, True)
    manifest = json.loads((tmp_path / "old.manifest.json").read_text())
    assert manifest["offsite"] == dict(record, holds="original")
    assert manifest["original"]["sha256"] == sent != manifest["sha256"]
