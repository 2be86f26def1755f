"""runbook.ops.config_files (config_snapshot / config_restore) on real files, with validate and activate commands
that log their calls and pass or fail on demand (nginx on the lab's lb: tests/integration/test_config.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from opsmodule import load

mod = load("config_files")


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "site.conf").write_text("listen 8080;\n")
    (etc / "site.conf").chmod(0o640)
    (etc / "extra.conf").write_text("gzip on;\n")
    log, rc = tmp_path / "calls.log", {}
    commands = {}
    for name in ("validate", "activate"):
        rc[name] = tmp_path / f"{name}.rc"
        rc[name].write_text("0")
        script = tmp_path / name
        script.write_text(f"#!/bin/sh\necho {name} >> {log}\necho {name} said no\nexit $(cat {rc[name]})\n")
        script.chmod(0o755)
        commands[name] = [str(script)]
    base = {
        "set": "site",
        "dir": str(tmp_path / "snapshots"),
        "files": [str(etc / "site.conf"), str(etc / "extra.conf")],
    }
    return {"etc": etc, "log": log, "rc": rc, "commands": commands, "base": base}


def snapshot(site: dict[str, Any], **over: Any) -> dict[str, Any]:
    result: dict[str, Any] = mod.run(dict(site["base"], action="snapshot", **over))
    return result


def restore(site: dict[str, Any], check_mode: bool = False, **over: Any) -> dict[str, Any]:
    params = dict(site["base"], action="restore", validate_command=site["commands"]["validate"],
                  activate_command=site["commands"]["activate"], **over)  # fmt: skip
    result: dict[str, Any] = mod.run(params, check_mode=check_mode)
    return result


def calls(site: dict[str, Any]) -> list[str]:
    return site["log"].read_text().split() if site["log"].exists() else []


def test_snapshot_is_whole_checksummed_and_not_repeated(site: dict[str, Any]) -> None:
    first = snapshot(site, good=True, label="after deploy 42")
    assert first["changed"] and first["good"]
    folder = Path(site["base"]["dir"]) / "site" / first["version"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == sorted(site["base"]["files"])
    site_entry = next(f for f in manifest["files"] if f["path"].endswith("site.conf"))
    assert site_entry["mode"] == "0640" and site_entry["size"] == len("listen 8080;\n")
    assert (folder / "files" / site_entry["path"].lstrip("/")).read_text() == "listen 8080;\n"
    again = snapshot(site)
    assert not again["changed"] and again["version"] == first["version"]


def test_last_good_restores_validates_then_activates_and_twice_is_a_no_op(site: dict[str, Any]) -> None:
    good = snapshot(site, good=True)["version"]
    (site["etc"] / "site.conf").write_text("listen 9999; # a bad change\n")
    (site["etc"] / "site.conf").chmod(0o600)
    result = restore(site)
    assert result["changed"] and result["version"] == good
    assert result["safety_snapshot"] and result["version_before"] == result["safety_snapshot"]
    assert (site["etc"] / "site.conf").read_text() == "listen 8080;\n"
    assert stat.S_IMODE(os.stat(site["etc"] / "site.conf").st_mode) == 0o640
    assert calls(site) == ["validate", "activate"]
    second = restore(site)
    assert not second["changed"] and calls(site) == ["validate", "activate"]
    # previous: the undo of that restore - the bad change, kept by the safety snapshot
    undo = restore(site, version="previous")
    assert undo["version"] == result["safety_snapshot"]
    assert (site["etc"] / "site.conf").read_text() == "listen 9999; # a bad change\n"


def test_a_rejected_snapshot_is_written_back_and_nothing_activated(site: dict[str, Any]) -> None:
    good = snapshot(site, good=True)["version"]
    (site["etc"] / "site.conf").write_text("changed;\n")
    site["rc"]["validate"].write_text("1")
    with pytest.raises(mod.ConfigError, match=r"rejects snapshot .* nothing activated"):
        restore(site, version=good)
    assert (site["etc"] / "site.conf").read_text() == "changed;\n"
    assert calls(site) == ["validate"]


def test_a_failed_activation_puts_the_files_back_and_activates_them(site: dict[str, Any]) -> None:
    snapshot(site, good=True)
    (site["etc"] / "extra.conf").write_text("gzip off;\n")
    site["rc"]["activate"].write_text("1")
    with pytest.raises(mod.ConfigError, match="failed"):
        restore(site)
    assert (site["etc"] / "extra.conf").read_text() == "gzip off;\n"
    assert calls(site) == ["validate", "activate", "activate"]


def test_a_damaged_snapshot_is_refused_before_anything_is_written(site: dict[str, Any]) -> None:
    version = snapshot(site, good=True)["version"]
    copy = Path(site["base"]["dir"]) / "site" / version / "files" / str(site["etc"] / "site.conf").lstrip("/")
    copy.write_text("listen 8081;\n")
    (site["etc"] / "site.conf").write_text("now;\n")
    with pytest.raises(mod.ConfigError, match="does not match its checksum"):
        restore(site)
    assert (site["etc"] / "site.conf").read_text() == "now;\n" and calls(site) == []


def test_check_mode_and_refusals(site: dict[str, Any]) -> None:
    with pytest.raises(mod.ConfigError, match="no snapshot of site"):
        restore(site)
    snapshot(site)
    with pytest.raises(mod.ConfigError, match="known good"):
        restore(site)
    with pytest.raises(mod.ConfigError, match="nothing earlier"):
        restore(site, version="previous")
    with pytest.raises(mod.ConfigError, match="not a name"):
        mod.run(dict(site["base"], action="snapshot", set="../etc"))
    (site["etc"] / "site.conf").write_text("new;\n")
    dry = restore(site, check_mode=True, version="latest")
    assert dry["changed"] and dry["msg"].startswith("would restore")
    assert (site["etc"] / "site.conf").read_text() == "new;\n" and calls(site) == []


def test_pruning_keeps_the_newest_and_the_last_good(site: dict[str, Any]) -> None:
    good = snapshot(site, good=True)["version"]
    for i in range(4):
        (site["etc"] / "site.conf").write_text(f"v{i};\n")
        snapshot(site, keep=2)
    store = mod.Store(site["base"]["dir"], "site")
    kept = store.versions()
    assert good in kept and len(kept) == 3


def test_a_restore_interrupted_after_writing_is_finished_with_what_it_first_resolved(site: dict[str, Any]) -> None:
    good = snapshot(site, good=True)["version"]
    (site["etc"] / "site.conf").write_text("listen 9999; # a bad change\n")
    prepared = restore(site, version="previous", prepare=True)  # the role records this as the step's intent
    assert prepared["version"] == good and prepared["safety_snapshot"] == prepared["version_before"]
    assert (site["etc"] / "site.conf").read_text() == "listen 9999; # a bad change\n" and calls(site) == []
    # the control node died after the files were written, before they were validated and activated
    (site["etc"] / "site.conf").write_text("listen 8080;\n")
    versions = sorted(p.name for p in (Path(site["base"]["dir"]) / "site").iterdir() if not p.name.startswith("."))
    # resolving `previous` again would go one step too far back: to the safety snapshot of the bad change
    assert restore(site, check_mode=True, version="previous")["version"] == prepared["safety_snapshot"]
    again = restore(site, version=good, version_before=prepared["version_before"], reactivate=True)
    assert again["version"] == good and again["version_before"] == prepared["version_before"]
    assert calls(site) == ["validate", "activate"] and (site["etc"] / "site.conf").read_text() == "listen 8080;\n"
    after = sorted(p.name for p in (Path(site["base"]["dir"]) / "site").iterdir() if not p.name.startswith("."))
    assert after == versions  # no second safety snapshot of the half-restored files


def test_a_rejected_re_run_puts_back_the_files_as_they_were_before_the_step(site: dict[str, Any]) -> None:
    good = snapshot(site, good=True)["version"]
    (site["etc"] / "site.conf").write_text("bad;\n")
    prepared = restore(site, prepare=True)
    (site["etc"] / "site.conf").write_text("listen 8080;\n")  # written by the interrupted attempt
    site["rc"]["validate"].write_text("1")
    with pytest.raises(mod.ConfigError, match="rejects snapshot"):
        restore(site, version=good, version_before=prepared["version_before"], reactivate=True)
    assert (site["etc"] / "site.conf").read_text() == "bad;\n"
