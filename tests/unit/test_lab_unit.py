"""The lab package's pure logic and its error messages (no lab needed)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from runner import lab
from runner.errors import LabError
from runner.lab import engines, images, preflight

ROOT = Path(__file__).resolve().parents[2]


def test_lab_hosts_contract() -> None:
    assert lab.LAB_HOSTS == {
        "app1": "127.0.10.11",
        "app2": "127.0.10.12",
        "db": "127.0.10.21",
        "backup": "127.0.10.31",
        "lb": "127.0.10.41",
    }
    assert lab.APP_HOSTS == ("app1", "app2")


def test_default_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_LAB_DIR", raising=False)
    monkeypatch.delenv("RUNBOOK_LAB_RUN_DIR", raising=False)
    assert lab.ssh_key_path() == Path("/var/lib/runbook-lab/ssh/id_ed25519")
    assert lab.docker_host("app1") == "unix:///run/runbook-lab/app1/docker.sock"
    assert lab.docker_host("app2") == "unix:///run/runbook-lab/app2/docker.sock"
    assert lab.main_docker_host() == "unix:///run/runbook-lab/docker.sock"


def test_state_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_LAB_DIR", str(tmp_path))
    assert lab.ssh_key_path() == tmp_path / "ssh" / "id_ed25519"
    assert lab.status().ssh_key == tmp_path / "ssh" / "id_ed25519"


def test_docker_host_only_for_app_hosts() -> None:
    with pytest.raises(LabError, match="no Docker engine of its own"):
        lab.docker_host("db")


def test_ssh_argv_reaches_root_on_port_2222() -> None:
    argv = lab.ssh_argv("db")
    assert argv[0] == "ssh"
    assert argv[-1] == "root@127.0.10.21"
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-i") + 1] == str(lab.ssh_key_path())
    assert "StrictHostKeyChecking=no" in argv


def test_ssh_unknown_host() -> None:
    with pytest.raises(LabError, match="unknown lab host"):
        lab.ssh("web9", ["true"])


def test_not_root_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for action in (lab.up, lab.down, lab.reset):
        with pytest.raises(LabError) as info:
            action(lambda _line: None)
        message = str(info.value)
        assert "needs root" in message
        assert "\n" not in message


def test_missing_package_names_what_to_install() -> None:
    with pytest.raises(LabError) as info:
        preflight.need("runbook-lab-no-such-binary", "runbook-lab-pkg")
    assert str(info.value) == (
        "`runbook-lab-no-such-binary` not found: install it with `apt-get install -y runbook-lab-pkg`"
    )


def test_port_taken_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(lab.LAB_HOSTS, "backup", "127.0.10.99")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.10.99", lab.SSH_PORT))
        holder.listen(1)
        with pytest.raises(LabError) as info:
            preflight.check_ports_free(["backup"])
    message = str(info.value)
    assert "127.0.10.99:2222" in message and "already in use" in message
    assert "\n" not in message
    preflight.check_ports_free(["backup"])  # free again


def test_last_error_picks_the_fatal_line(tmp_path: Path) -> None:
    log = tmp_path / "dockerd.log"
    log.write_text(
        'time="t" level=info msg="starting up"\n'
        'time="t" level=info msg="more"\n'
        "failed to start daemon: pid file found, ensure docker is not running or delete /x/docker.pid\n"
    )
    assert engines.last_error(log).startswith("failed to start daemon: pid file found")
    log.write_text('time="t" level=fatal msg="cannot bind"\n')
    assert engines.last_error(log) == "cannot bind"
    assert engines.last_error(tmp_path / "missing.log") == "no log"


def test_recipe_hash_is_stable() -> None:
    assert images.recipe_hash(lab.HOST_RECIPE) == images.recipe_hash(lab.HOST_RECIPE)
    assert images.recipe_hash(lab.HOST_RECIPE) != images.recipe_hash(lab.APP_RECIPE)
    for name in (*lab.HOST_RECIPE, *lab.APP_RECIPE, *lab.HOST_FILES):
        assert (lab.RECIPES_DIR / name).is_file()


def test_lab_inventory_describes_exactly_the_lab() -> None:
    data = YAML(typ="safe").load((ROOT / "inventories" / "lab" / "hosts.yml").read_text())
    top = data["all"]
    assert top["vars"]["ansible_port"] == lab.SSH_PORT
    assert top["vars"]["ansible_user"] == "root"
    assert top["vars"]["ansible_ssh_private_key_file"] == "/var/lib/runbook-lab/ssh/id_ed25519"
    assert top["vars"]["ansible_python_interpreter"] == "/usr/bin/python3"
    assert "StrictHostKeyChecking=no" in top["vars"]["ansible_ssh_common_args"]
    groups = top["children"]
    assert set(groups) == {"app", "db", "lb", "backup"}
    hosts = {name: spec["ansible_host"] for g in groups.values() for name, spec in g["hosts"].items()}
    assert hosts == lab.LAB_HOSTS
    assert set(groups["app"]["hosts"]) == set(lab.APP_HOSTS)
    db_vars = YAML(typ="safe").load((ROOT / "inventories" / "lab" / "group_vars" / "db.yml").read_text())
    assert (db_vars["db_user"], db_vars["db_password"], db_vars["db_name"]) == ("lab", "lab", "shop")


def test_example_inventory_is_production_shaped() -> None:
    data = YAML(typ="safe").load((ROOT / "inventories" / "example" / "hosts.yml").read_text())
    groups = data["all"]["children"]
    assert set(groups) == {"app", "db", "lb", "backup"}
    for group in groups.values():
        for name in group["hosts"]:
            assert name.endswith(".example.org")


def _print_mirror(apt_dir: Path) -> str:
    result = subprocess.run(
        [str(lab.RECIPES_DIR / "build-host-image.sh"), "--print-mirror"],
        capture_output=True,
        text=True,
        env={**os.environ, "LAB_APT_DIR": str(apt_dir)},
        check=False,
        timeout=30,
    )
    return result.stdout + result.stderr


def test_host_image_mirror_comes_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.test/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    assert (
        _print_mirror(tmp_path) == "mirror http://mirror.test/debian\nsecurity http://security.test/debian-security\n"
    )


def test_host_image_mirror_comes_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb-src http://src.test/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.test/debian bookworm main contrib\n"
    )
    assert _print_mirror(tmp_path) == "mirror http://mirror.test/debian\nsecurity none\n"


def test_host_image_without_a_mirror_says_so(tmp_path: Path) -> None:
    assert "no Debian bookworm mirror found" in _print_mirror(tmp_path)
