"""`runbook backups status`: the catalog module on real backup directories (made by backup_finalize, as the roles
make them) and the status logic on its answers; the lab run is in tests/integration/test_backups_status_lab.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opsmodule import load

from runner.engine import backup_status

ROOT = Path(__file__).resolve().parents[2]
catalog_mod = load("backup_catalog")
finalize_mod = load("backup_finalize")


def make_backup(directory: Path, database: str, name: str, payload: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.dump.partial").write_bytes(payload)
    result = finalize_mod.finalize(
        {"dir": str(directory), "name": name, "kind": "postgres", "format": "custom", "database": database}
    )
    return Path(result["backup"]["path"])


def test_catalog_finds_the_newest_verified_backup_of_each_database(tmp_path: Path) -> None:
    root = tmp_path / "postgres"
    make_backup(root / "shop", "shop", "shop-1", b"first backup")
    newest = make_backup(root / "shop", "shop", "shop-2", b"second backup")
    newest.write_bytes(b"second backuX")  # one flipped byte: the newest no longer verifies
    make_backup(root / "crm", "crm", "crm-1", b"crm data")
    (root / "empty").mkdir()
    answer = catalog_mod.catalog({"dirs": [str(root), str(tmp_path / "absent")], "decode": False})
    by_db = {d["database"]: d for d in answer["databases"]}
    assert set(by_db) == {"shop", "crm"}  # a directory with no backup is not a backup directory
    shop = by_db["shop"]
    assert shop["backups"] == 2 and shop["latest_marker"] == "shop-2"
    assert shop["newest"]["name"] == "shop-2" and shop["newest"]["failed_check"] == "sha256"
    assert shop["verified"]["name"] == "shop-1" and shop["verified"]["size"] == len(b"first backup")
    assert by_db["crm"]["newest"]["ok"] is True and by_db["crm"]["verified"]["name"] == "crm-1"
    # a database directory given directly works the same
    direct = catalog_mod.catalog({"dirs": [str(root / "crm")]})
    assert [d["database"] for d in direct["databases"]] == ["crm"]


def answer(finished: str, *, newest_ok: bool = True) -> dict[str, Any]:
    newest = {
        "name": "shop-2",
        "finished": finished,
        "ok": newest_ok,
        "failed_check": "" if newest_ok else "size",
        "detail": "verified" if newest_ok else "truncated",
    }
    verified = {"name": "shop-1", "finished": finished, "size": 10, "sha256": "ab"}
    return {"dir": "/b/shop", "database": "shop", "kind": "postgres", "backups": 2, "latest_marker": "shop-2",
            "newest": newest, "verified": verified}  # fmt: skip


def test_age_and_problems() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    two_hours = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fresh = backup_status.states_from("db", [answer(two_hours)], now)[0]
    assert fresh.age_s == 7200.0 and fresh.problem(86400) == "" and fresh.problem(None) == ""
    assert "more than 1h00m" in fresh.problem(3600)
    bad_newest = backup_status.states_from("db", [answer(two_hours, newest_ok=False)], now)[0]
    assert "fails verification (size: truncated)" in bad_newest.problem(86400)
    none = backup_status.states_from("db", [{"dir": "/b/x", "database": "x", "newest": None, "verified": None}], now)[0]
    assert none.problem(None) == "no finished backup"

    report = backup_status.BackupsReport(databases=[fresh], max_age_s=86400)
    assert report.ok
    assert not backup_status.BackupsReport(databases=[fresh], max_age_s=3600).ok
    assert not backup_status.BackupsReport(databases=[fresh], host_errors={"db2": "unreachable"}).ok
    assert not backup_status.BackupsReport().ok  # nothing found is not fine
    data = json.loads(json.dumps(report.to_dict()))
    assert data["databases"][0]["verified"] == "shop-1" and data["databases"][0]["problem"] == ""
    text = backup_status.format_text(report)
    assert "shop-1" in text and "2h00m" in text and text.splitlines()[1].endswith("ok")
    prom = backup_status.format_prometheus(report)
    assert 'runbook_backup_verified_age_seconds{host="db",database="shop",kind="postgres"} 7200.0' in prom
    assert 'runbook_backup_verified{host="db",database="shop",kind="postgres"} 1' in prom


def test_events_give_each_hosts_answer_or_its_error() -> None:
    events = backup_status.CatalogEvents()
    found = {"databases": [answer("2026-12-01T10:00:00.000000Z")]}
    ok = {"event": "runner_on_ok", "event_data": {"host": "db", "task": backup_status.CATALOG_TASK, "res": found}}
    down = {"event": "runner_on_unreachable", "event_data": {"host": "db2", "task": backup_status.CATALOG_TASK,
                                                             "res": {"msg": "ssh: connect refused"}}}  # fmt: skip
    for event in (ok, down, {"event": "playbook_on_stats", "event_data": {}}):
        assert events(event) is True
    assert list(events.answers) == ["db"] and events.errors == {"db2": "unreachable: ssh: connect refused"}


@pytest.mark.parametrize("value", ["2x", "soon"])
def test_bad_max_age_is_invalid_input(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from runner import cli

    status = cli.main(["backups", "status", "-i", str(ROOT / "inventories" / "lab" / "hosts.yml"), "--max-age", value])
    assert status == 2
    assert "--max-age" in capsys.readouterr().err
