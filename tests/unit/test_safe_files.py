"""Files the runbook.ops modules write on a host cannot be redirected: module_utils/safe_files on a temporary
directory (a planted symlink at the target or at a temporary name, a FIFO or a directory at the target, mode and
owner kept, nothing half written after a failure), then every module that writes a file refusing a planted link
before it changes anything (the lab's lb case: tests/integration/test_config.py)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opsmodule import load

config_mod = load("config_files")  # puts runner/collections on sys.path for the module_utils below
nginx_mod = load("nginx_upstream")
ledger_mod = load("release_ledger")
lease_mod = load("lease_lock")
finalize_mod = load("backup_finalize")
dump_mod = load("pg_dump_partial")
host_file = load("host_file")

from ansible_collections.runbook.ops.plugins.module_utils import safe_files, state_files  # noqa: E402

ROOT_ONLY = b"root:$6$only-root-reads-this:19000:0:99999:7:::\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-only file outside the directory written to: what a planted link points at."""
    secret = tmp_path / "secret" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(ROOT_ONLY)
    secret.chmod(0o600)
    return secret


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "conf.d"
    directory.mkdir()
    return directory


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == ROOT_ONLY and stat.S_IMODE(victim.stat().st_mode) == 0o600


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------------ the one writer


def test_a_new_file_gets_the_mode_given_and_no_temporary_file_is_left(conf_dir: Path) -> None:
    target = conf_dir / "site.conf"
    safe_files.write_file(str(target), b"listen 80;\n", mode=0o640)
    assert target.read_bytes() == b"listen 80;\n" and stat.S_IMODE(target.stat().st_mode) == 0o640
    safe_files.write_file(str(conf_dir / "state.json"), b"{}\n")
    assert stat.S_IMODE((conf_dir / "state.json").stat().st_mode) == 0o600  # owner only unless told
    assert leftovers(conf_dir) == []


def test_a_planted_symlink_at_the_target_is_refused_and_nothing_is_written(conf_dir: Path, victim: Path) -> None:
    target = conf_dir / "site.conf"
    target.symlink_to(victim)
    with pytest.raises(safe_files.UnsafePath, match=r"refusing to write .*site\.conf: it is a symlink"):
        safe_files.write_file(str(target), b"proxy_pass http://evil;\n", mode=0o644)
    assert untouched(victim) and target.is_symlink() and leftovers(conf_dir) == []
    dangling = conf_dir / "new.conf"
    dangling.symlink_to(victim.parent / "created-through-the-link")
    with pytest.raises(safe_files.UnsafePath, match="symlink"):
        safe_files.write_file(str(dangling), b"x")
    assert not (victim.parent / "created-through-the-link").exists()


def test_a_planted_symlink_at_the_old_tmp_name_is_never_followed(conf_dir: Path, victim: Path) -> None:
    target = conf_dir / "site.conf"
    target.write_bytes(b"old;\n")
    (conf_dir / "site.conf.tmp").symlink_to(victim)
    safe_files.write_file(str(target), b"new;\n", mode=0o644)
    assert target.read_bytes() == b"new;\n" and not target.is_symlink()
    assert untouched(victim) and (conf_dir / "site.conf.tmp").is_symlink()


def test_a_symlink_at_the_chosen_temporary_name_makes_the_writer_pick_another(
    conf_dir: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = iter([".site.conf.guessed.tmp", ".site.conf.fresh.tmp"])
    monkeypatch.setattr(safe_files, "_temp_name", lambda name: next(names))
    (conf_dir / ".site.conf.guessed.tmp").symlink_to(victim)
    safe_files.write_file(str(conf_dir / "site.conf"), b"new;\n")
    assert (conf_dir / "site.conf").read_bytes() == b"new;\n" and untouched(victim)
    assert (conf_dir / ".site.conf.guessed.tmp").is_symlink()


def test_a_symlink_swapped_in_while_writing_is_refused_at_the_rename(
    conf_dir: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = conf_dir / "site.conf"
    target.write_bytes(b"old;\n")
    real_fsync = os.fsync

    def swap_then_fsync(fd: int) -> None:
        if target.exists() and not target.is_symlink():
            target.unlink()
            target.symlink_to(victim)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", swap_then_fsync)
    with pytest.raises(safe_files.UnsafePath, match="symlink"):
        safe_files.write_file(str(target), b"new;\n")
    assert untouched(victim) and target.is_symlink() and leftovers(conf_dir) == []


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_fifo_or_a_directory_at_the_target_is_refused(conf_dir: Path, kind: str) -> None:
    target = conf_dir / "site.conf"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    with pytest.raises(safe_files.UnsafePath, match=f"refusing to write .*: it is a {kind}"):
        safe_files.write_file(str(target), b"x")
    assert leftovers(conf_dir) == []


def test_mode_and_owner_are_kept_from_the_file_replaced(conf_dir: Path) -> None:
    target = conf_dir / "site.conf"
    target.write_bytes(b"old;\n")
    target.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(target, 4321, 4322)
    safe_files.write_file(str(target), b"new;\n")
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640 and target.read_bytes() == b"new;\n"
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (4321, 4322)


def test_owner_given_is_set_on_the_descriptor(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: calls.append((type(fd), uid, gid)))
    monkeypatch.setattr(os, "chown", lambda *a, **k: pytest.fail("chown of a path follows links"))
    monkeypatch.setattr(os, "chmod", lambda *a, **k: pytest.fail("chmod of a path follows links"))
    safe_files.write_file(str(conf_dir / "site.conf"), b"x", mode=0o644, uid=101, gid=102)
    assert calls == [(int, 101, 102)]


def test_a_failure_while_writing_leaves_the_old_file_and_no_partial_one(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = conf_dir / "site.conf"
    target.write_bytes(b"old;\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        safe_files.write_file(str(target), b"new;\n" * 1000)
    assert target.read_bytes() == b"old;\n" and sorted(p.name for p in conf_dir.iterdir()) == ["site.conf"]


def test_an_exclusive_write_never_replaces_anything(conf_dir: Path, victim: Path) -> None:
    target = conf_dir / "host.json"
    safe_files.write_file(str(target), b"{}\n", mode=0o644, replace=False)
    with pytest.raises(FileExistsError):
        safe_files.write_file(str(target), b"[]\n", replace=False)
    (conf_dir / "other.json").symlink_to(victim)
    with pytest.raises((FileExistsError, safe_files.UnsafePath)):
        safe_files.write_file(str(conf_dir / "other.json"), b"[]\n", replace=False)
    assert target.read_bytes() == b"{}\n" and untouched(victim) and leftovers(conf_dir) == []


# ------------------------------------------------------------------------------- directories the product makes


def test_a_directory_is_made_with_its_parents_and_the_exact_mode(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        assert safe_files.ensure_dir(str(tmp_path / "a" / "b"), 0o755) is True
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755
    assert safe_files.ensure_dir(str(tmp_path / "a" / "b"), 0o700) is False
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755  # an existing one keeps its mode
    safe_files.ensure_dir(str(tmp_path / "a" / "b"), 0o700, set_mode=True)
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_a_planted_symlink_for_a_directory_the_product_makes_is_refused(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "backups").symlink_to(victim.parent)
    with pytest.raises(safe_files.UnsafePath, match=r"refusing to use .*backups: it is a symlink"):
        safe_files.ensure_dir(str(tmp_path / "backups"), 0o700, set_mode=True)
    assert stat.S_IMODE(victim.parent.stat().st_mode) != 0o700 and untouched(victim)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(safe_files.UnsafePath, match="not a directory"):
        safe_files.ensure_dir(str(tmp_path / "file"), 0o700)


def test_a_lock_file_is_never_created_through_a_planted_link(tmp_path: Path, victim: Path) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / ".host.guard").symlink_to(victim.parent / "created")
    with pytest.raises(safe_files.UnsafePath, match="symlink"), state_files.exclusive_lock(str(locks), ".host.guard"):
        pass
    assert not (victim.parent / "created").exists()


# ---------------------------------------------------------------------------- the modules that write files


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "site.conf").write_text("listen 8080;\n")
    (etc / "extra.conf").write_text("gzip on;\n")
    ok = tmp_path / "ok"
    ok.write_text("#!/bin/sh\nexit 0\n")
    ok.chmod(0o755)
    params = {
        "set": "site",
        "dir": str(tmp_path / "snapshots"),
        "files": [str(etc / "site.conf"), str(etc / "extra.conf")],
        "validate_command": [str(ok)],
        "activate_command": [str(ok)],
    }
    config_mod.run(dict(params, action="snapshot", good=True))
    (etc / "site.conf").write_text("listen 9999; # a bad change\n")
    (etc / "extra.conf").write_text("gzip off;\n")
    yield {"etc": etc, "params": params}


def test_config_restore_writes_the_real_file_when_the_old_tmp_name_is_a_planted_link(
    site: dict[str, Any], victim: Path
) -> None:
    (site["etc"] / "site.conf.tmp").symlink_to(victim)
    result = config_mod.run(dict(site["params"], action="restore"))
    assert result["changed"] and (site["etc"] / "site.conf").read_text() == "listen 8080;\n"
    assert untouched(victim)


def test_config_restore_refuses_a_symlinked_live_file_before_writing_anything(
    site: dict[str, Any], victim: Path
) -> None:
    store = config_mod.Store(site["params"]["dir"], "site")
    versions = store.versions()
    (site["etc"] / "site.conf").unlink()
    (site["etc"] / "site.conf").symlink_to(victim)
    with pytest.raises(OSError, match=r"refusing to write .*site\.conf: it is a symlink"):
        config_mod.run(dict(site["params"], action="restore"))
    assert untouched(victim) and (site["etc"] / "extra.conf").read_text() == "gzip off;\n"
    assert store.versions() == versions  # not even a safety snapshot


def test_config_snapshot_refuses_a_planted_store_directory(site: dict[str, Any], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "snapshots" / "other").symlink_to(elsewhere)
    with pytest.raises(OSError, match=r"refusing to use .*other: it is a symlink"):
        config_mod.run(dict(site["params"], action="snapshot", set="other"))
    assert list(elsewhere.iterdir()) == []


@pytest.fixture
def upstream(tmp_path: Path) -> dict[str, Any]:
    conf = tmp_path / "conf.d" / "upstream-backend.conf"
    conf.parent.mkdir()
    conf.write_text("upstream backend {\n    server 127.0.10.11:8080;\n    server 127.0.10.12:8080;\n}\n")
    calls = tmp_path / "calls.log"
    script = tmp_path / "nginx"
    script.write_text(f"#!/bin/sh\necho called >> {calls}\nexit 0\n")
    script.chmod(0o755)
    params = {"file": str(conf), "upstream": "backend", "to": "blue", "state_dir": str(tmp_path / "state"),
              "colours": {"blue": ["127.0.10.11:8080"], "green": ["127.0.10.12:8080"]},
              "test_command": [str(script)], "reload_command": [str(script)], "run_id": "r"}  # fmt: skip
    return {"conf": conf, "calls": calls, "params": params}


def test_the_upstream_switch_ignores_a_planted_tmp_link(upstream: dict[str, Any], victim: Path) -> None:
    Path(str(upstream["conf"]) + ".tmp").symlink_to(victim)
    assert nginx_mod.switch(upstream["params"])["changed"]
    assert "127.0.10.12" not in upstream["conf"].read_text() and untouched(victim)


@pytest.mark.parametrize("planted", ["file", "state"])
def test_the_upstream_switch_refuses_a_planted_link_before_switching(
    upstream: dict[str, Any], victim: Path, planted: str
) -> None:
    before = upstream["conf"].read_bytes()
    if planted == "state":
        Path(upstream["params"]["state_dir"]).mkdir()
        (Path(upstream["params"]["state_dir"]) / "backend.json").symlink_to(victim)
    else:
        real = upstream["conf"].with_name("real.conf")
        real.write_bytes(before)
        upstream["conf"].unlink()
        upstream["conf"].symlink_to(real)
    with pytest.raises(OSError, match=r"refusing to write .*: it is a symlink"):
        nginx_mod.switch(upstream["params"])
    assert untouched(victim) and not upstream["calls"].exists()
    assert upstream["conf"].read_bytes() == before


def test_the_release_ledger_refuses_a_planted_link(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "backend.json").symlink_to(victim)
    with pytest.raises(OSError, match="symlink"):
        ledger_mod.save_atomic(str(tmp_path / "backend.json"), {"releases": []})
    assert untouched(victim) and leftovers(tmp_path) == []


@pytest.mark.parametrize("planted", ["host.json", ".host.guard"])
def test_a_lease_is_never_written_through_a_planted_link(tmp_path: Path, victim: Path, planted: str) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / planted).symlink_to(victim)
    with pytest.raises(OSError, match="symlink"):
        lease_mod.acquire(str(locks), "host", "run-a", "op", 1, "control", 60)
    assert untouched(victim)


def test_a_backup_marker_is_never_written_through_a_planted_link(tmp_path: Path, victim: Path) -> None:
    name = "catalog-20250101T000000Z"
    (tmp_path / f"{name}.archive.gz.partial").write_bytes(b"\x1f\x8b" + os.urandom(200))
    (tmp_path / ".latest").symlink_to(victim)
    params = {"dir": str(tmp_path), "name": name, "kind": "mongodb", "format": "archive", "database": "catalog"}
    with pytest.raises(OSError, match=r"refusing to write .*\.latest: it is a symlink"):
        finalize_mod.finalize(params)
    assert untouched(victim)
    assert (tmp_path / f"{name}.archive.gz.partial").exists()  # refused before the backup was renamed


def test_a_planted_backup_directory_is_refused(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "backups").symlink_to(victim.parent)
    with pytest.raises(OSError, match="symlink"):
        dump_mod.prepare_directory(str(tmp_path / "backups"), 0o700)
    assert stat.S_IMODE(victim.parent.stat().st_mode) != 0o700


def test_state_files_write_json_through_the_one_writer(tmp_path: Path, victim: Path) -> None:
    target = tmp_path / "backend.json"
    state_files.write_json(str(target), {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1} and stat.S_IMODE(target.stat().st_mode) == 0o644
    (tmp_path / "other.json").symlink_to(victim)
    with pytest.raises(safe_files.UnsafePath):
        state_files.write_json(str(tmp_path / "other.json"), {})
    assert untouched(victim)


def test_a_page_a_role_writes_goes_through_the_one_writer(tmp_path: Path, victim: Path) -> None:
    page = tmp_path / "www" / "maintenance" / "maintenance.html"
    params = {"dest": str(page), "content": "<h1>Maintenance</h1>\n", "mode": "0644", "own_dir": True}
    assert host_file.put(params, check_mode=True)["changed"] and not page.parent.exists()
    assert host_file.put(params)["changed"] and page.read_text() == "<h1>Maintenance</h1>\n"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644 and not host_file.put(params)["changed"]
    page.unlink()
    page.symlink_to(victim)
    with pytest.raises(OSError, match=r"refusing to write .*maintenance\.html: it is a symlink"):
        host_file.put(params)
    (tmp_path / "planted").symlink_to(victim.parent)
    with pytest.raises(OSError, match=r"refusing to use directory .*planted: it is a symlink"):
        host_file.put(dict(params, dest=str(tmp_path / "planted" / "maintenance.html")))
    assert untouched(victim) and sorted(p.name for p in victim.parent.iterdir()) == ["shadow"]
