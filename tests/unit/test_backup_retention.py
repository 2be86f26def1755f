"""runbook.ops.backup_retention on real files: the plan, compression verified and recorded, deletes exactly planned."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from opsmodule import load

retention = load("backup_retention")
finalize = load("backup_finalize")
DAY = 86400


def make_backup(directory: Path, name: str, days: float, latest: bool = False) -> None:
    partial = directory / f"{name}.dump.partial"
    partial.write_bytes(os.urandom(2048) + name.encode())
    finalize.finalize({"dir": str(directory), "name": name, "format": "custom", "kind": "postgres",
                       "database": "rbret", "metadata": {}, "update_latest": latest, "marker": ".latest"})
    when = time.time() - days * DAY
    os.utime(directory / f"{name}.dump", (when, when))


def params(directory: Path, **more: Any) -> dict[str, Any]:
    base = {"action": "plan", "dir": str(directory), "kind": "postgres", "pattern": "", "marker": ".latest",
            "policy": {"keep_last": 2, "keep_days": 10, "compress_after_days": 3, "offsite": False},
            "offsite_states": {}, "offsite_records": {}, "expected": {}, "incoming": [], "phase": "delete"}
    base.update(more)
    return base


def test_cleanup_executes_exactly_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention.rf, "compressor", lambda: "gzip")
    for name, days in (("b1", 40), ("b2", 20), ("b3", 5), ("b4", 1)):
        make_backup(tmp_path, name, days)
    make_backup(tmp_path, "b0", 60, latest=True)  # oldest, yet the .latest target
    shown = retention.run(params(tmp_path))
    assert shown["plan_actions"] == {"b4": [], "b3": ["compress"], "b2": ["delete"], "b1": ["delete"], "b0": []}
    original = json.loads((tmp_path / "b3.manifest.json").read_text())["sha256"]
    for phase in ("compress", "delete"):
        retention.run(params(tmp_path, action="apply", phase=phase, expected=shown["plan_actions"]))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "b0.dump", "b0.manifest.json", "b3.dump.gz", "b3.manifest.json", "b4.dump", "b4.manifest.json"]
    manifest = json.loads((tmp_path / "b3.manifest.json").read_text())
    assert manifest["compression"] == "gzip" and manifest["original"]["sha256"] == original
    assert manifest["data"] == "b3.dump.gz"
    assert abs((tmp_path / "b3.dump.gz").stat().st_mtime - (time.time() - 5 * DAY)) < 60  # its age kept
    assert hashlib.sha256(gzip.decompress((tmp_path / "b3.dump.gz").read_bytes())).hexdigest() == original
    again = retention.run(params(tmp_path))
    assert all(not acts for acts in again["plan_actions"].values())
    assert again["plan"][1]["state"] == "verified"  # the compressed backup still verifies


def test_a_changed_plan_fails_before_acting(tmp_path: Path) -> None:
    for name, days in (("b1", 40), ("b2", 1)):
        make_backup(tmp_path, name, days)
    with pytest.raises(ValueError, match="plan changed"):
        retention.run(params(tmp_path, action="apply", expected={"b1": [], "b2": []},
                             policy={"keep_last": 1, "offsite": False}))
    assert (tmp_path / "b1.dump").exists()


def test_empty_policy_fails_before_reading(tmp_path: Path) -> None:
    with pytest.raises(retention.rp.PolicyError):
        retention.run(params(tmp_path / "missing", policy={"offsite": True}))


def test_seed_004_files_by_pattern(tmp_path: Path) -> None:
    for i, days in enumerate((1, 2, 40, 50)):
        path = tmp_path / f"db_backup_2025102{i}_153000.sql"
        path.write_text("select 1;\n")
        os.utime(path, (time.time() - days * DAY,) * 2)
    (tmp_path / ".latest_backup").write_text("20251023_153000\n")
    (tmp_path / "compose_20251020_153000.yml").write_text("x")
    got = retention.run(params(tmp_path, kind="files", pattern="db_backup_*.sql", marker=".latest_backup",
                               policy={"keep_days": 30}))
    assert got["plan_actions"] == {"db_backup_20251020_153000.sql": [], "db_backup_20251021_153000.sql": [],
                                   "db_backup_20251022_153000.sql": ["delete"],
                                   "db_backup_20251023_153000.sql": []}
    assert "latest" in next(e["rule"] for e in got["plan"] if e["name"].startswith("db_backup_20251023"))


def test_a_compressed_backup_still_verifies_and_a_damaged_one_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = retention.rf
    monkeypatch.setattr(check, "compressor", lambda: "gzip")
    partial = tmp_path / "m1.archive.gz.partial"
    partial.write_bytes(gzip.compress(b"\x6d\xe2\x99\x81" + os.urandom(4096)))
    finalize.finalize({"dir": str(tmp_path), "name": "m1", "format": "archive", "kind": "mongodb",
                       "database": "rbret", "metadata": {"compression": "gzip"}, "update_latest": True,
                       "marker": ".latest"})  # "compression" as backup_mongo writes it: the archive's own gzip
    from ansible_collections.runbook.ops.plugins.module_utils import backup_check
    before = backup_check.verify({"kind": "mongodb", "dir": str(tmp_path), "backup": "latest"})
    assert before["ok"] and "decompress" not in [c["name"] for c in before["checks"]]
    backup = next(b for b in check.read_managed(str(tmp_path), "mongodb", ".latest", {}))
    assert not backup["compressed"]
    check.compress(str(tmp_path), backup, managed=True)
    got = backup_check.verify({"kind": "mongodb", "dir": str(tmp_path), "backup": "latest"})
    assert got["ok"] and "decompress" in [c["name"] for c in got["checks"]]
    manifest = json.loads((tmp_path / "m1.manifest.json").read_text())
    manifest["original"]["sha256"] = "0" * 64  # the decode no longer proves the original
    (tmp_path / "m1.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(backup_check.Refused, match="decodes to sha256"):
        backup_check.verify({"kind": "mongodb", "dir": str(tmp_path), "backup": "latest"})
