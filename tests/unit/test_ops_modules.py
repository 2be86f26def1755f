"""Pure logic of the runbook.ops modules, imported from the module files (no Docker, no lab, no Ansible run).

- container_swap: the user's run spec (image defaults removed), links/volumes/networks, image refs, and the swap
  sequence against a fake engine (order of operations, restore on failure, nothing touched when the image is
  missing, idempotence, check mode);
- release_ledger: previous-release resolution, adoption, record/mark_verified, pruning, atomic locked writes;
- http_check: durations, matching (status, body, JSON, time), attempts;
- the PostgreSQL modules' connection options: one doc fragment, one argument spec, one way to exit.
"""

from __future__ import annotations

import copy
import http.server
import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from opsmodule import load as _load

ROOT = Path(__file__).resolve().parents[2]

swap = _load("container_swap")
ledger_mod = _load("release_ledger")
http_mod = _load("http_check")

from ansible_collections.runbook.ops.plugins.doc_fragments.postgres import ModuleDocFragment  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import pg_common  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils.docker_api import (  # noqa: E402
    DockerError,
    demultiplex,
    split_image_ref,
)

# ----------------------------------------------------------------------------------------------- fixtures

IMAGE_V1_ID = "sha256:" + "1" * 64
IMAGE_V2_ID = "sha256:" + "2" * 64
CONTAINER_ID = "c" * 64


def image_doc(version: str, image_id: str) -> dict[str, Any]:
    return {
        "Id": image_id,
        "RepoTags": [f"lab/backend:{version}"],
        "RepoDigests": [f"lab/backend@sha256:{version * 32}"[:80]],
        "Config": {
            "Env": ["PATH=/bin", f"APP_VERSION={version}"],
            "Cmd": ["/bin/start"],
            "Entrypoint": None,
            "WorkingDir": "/www",
            "User": "",
            "Labels": {"org.opencontainers.image.version": version, "app": "backend"},
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
            "Healthcheck": {"Test": ["CMD", "/bin/check"], "Interval": 5_000_000_000},
            "StopSignal": "SIGTERM",
        },
    }


def container_doc(image: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    image = image or image_doc("v1", IMAGE_V1_ID)
    cfg = image["Config"]
    doc: dict[str, Any] = {
        "Id": CONTAINER_ID,
        "Name": "/backend",
        "Image": image["Id"],
        "State": {"Running": True, "Health": {"Status": "healthy"}},
        "Config": {
            "Hostname": "vm",
            "Domainname": "",
            "User": cfg["User"],
            "AttachStdout": False,
            "Tty": False,
            "Env": ["APP_LISTEN=127.0.10.11:8080", "APP_ENV=lab", *cfg["Env"]],
            "Cmd": list(cfg["Cmd"]),
            "Entrypoint": None,
            "WorkingDir": cfg["WorkingDir"],
            "Image": "lab/backend:v1",
            "Labels": {**cfg["Labels"], "runbook.lab": "1"},
            "ExposedPorts": dict(cfg["ExposedPorts"]),
            "Volumes": dict(cfg["Volumes"]),
            "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O- http://$APP_LISTEN/health"], "Interval": 2_000_000_000},
            "StopSignal": "SIGTERM",
        },
        "HostConfig": {
            "NetworkMode": "host",
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "Binds": None,
            "Links": None,
            "Memory": 0,
            "Privileged": False,
            "Dns": [],
        },
        "NetworkSettings": {"Networks": {"host": {"NetworkID": "x", "Aliases": None}}},
        "Mounts": [
            {"Type": "volume", "Name": "a" * 64, "Destination": "/data", "RW": True},
        ],
    }
    doc.update(overrides)
    return doc


# ------------------------------------------------------------------------------------ run spec (swap)


def test_user_config_drops_only_old_image_defaults() -> None:
    cfg = swap.user_config(container_doc(), image_doc("v1", IMAGE_V1_ID))
    assert cfg["Env"] == ["APP_LISTEN=127.0.10.11:8080", "APP_ENV=lab"]
    assert cfg["Labels"] == {"runbook.lab": "1"}
    assert cfg["Healthcheck"]["Test"][0] == "CMD-SHELL"  # the user's healthcheck, not the image's
    for dropped in ("Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal"):
        assert dropped not in cfg, dropped
    assert "Hostname" not in cfg  # host networking: the host's name, not the user's
    assert "Tty" not in cfg and "AttachStdout" not in cfg  # false is the default


def test_user_config_keeps_user_overrides_of_image_values() -> None:
    doc = container_doc()
    doc["Config"]["Env"] = ["APP_VERSION=pinned", "PATH=/bin"]
    doc["Config"]["Cmd"] = ["/bin/start", "--debug"]
    doc["Config"]["WorkingDir"] = "/srv"
    doc["Config"]["Labels"]["app"] = "renamed"
    doc["Config"]["Healthcheck"] = {"Test": ["NONE"]}
    doc["Config"]["ExposedPorts"] = {"8080/tcp": {}, "9090/tcp": {}}
    cfg = swap.user_config(doc, image_doc("v1", IMAGE_V1_ID))
    assert cfg["Env"] == ["APP_VERSION=pinned"]
    assert cfg["Cmd"] == ["/bin/start", "--debug"]
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["Labels"] == {"app": "renamed", "runbook.lab": "1"}
    assert cfg["Healthcheck"] == {"Test": ["NONE"]}
    assert cfg["ExposedPorts"] == {"9090/tcp": {}}


def test_user_entrypoint_keeps_cmd_even_when_equal_to_image_cmd() -> None:
    doc = container_doc()
    doc["Config"]["Entrypoint"] = ["/bin/sh", "-c"]
    cfg = swap.user_config(doc, image_doc("v1", IMAGE_V1_ID))
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"]
    assert cfg["Cmd"] == ["/bin/start"]


def test_user_config_without_old_image_keeps_everything() -> None:
    cfg = swap.user_config(container_doc(), None)
    assert "PATH=/bin" in cfg["Env"] and cfg["Cmd"] == ["/bin/start"]


def test_generated_hostname_dropped_on_bridge_but_user_hostname_kept() -> None:
    doc = container_doc()
    doc["HostConfig"]["NetworkMode"] = "bridge"
    doc["Config"]["Hostname"] = CONTAINER_ID[:12]
    assert "Hostname" not in swap.user_config(doc, image_doc("v1", IMAGE_V1_ID))
    doc["Config"]["Hostname"] = "api-1"
    assert swap.user_config(doc, image_doc("v1", IMAGE_V1_ID))["Hostname"] == "api-1"


def test_host_config_rewrites_links_keeps_anonymous_volumes_and_drops_empties() -> None:
    doc = container_doc()
    doc["HostConfig"]["Links"] = ["/db:/backend/database"]
    doc["HostConfig"]["Binds"] = ["/srv/conf:/etc/app:ro"]
    doc["Mounts"].append({"Type": "bind", "Source": "/srv/conf", "Destination": "/etc/app", "RW": False})
    doc["Mounts"].append({"Type": "volume", "Name": "named", "Destination": "/named", "RW": True})
    host_config = swap.user_host_config(doc)
    assert host_config["Links"] == ["db:database"]
    assert host_config["Binds"] == ["/srv/conf:/etc/app:ro", "a" * 64 + ":/data"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert host_config["NetworkMode"] == "host"
    assert "Dns" not in host_config and host_config["Memory"] == 0 and host_config["Privileged"] is False


def test_networking_host_mode_has_no_endpoints() -> None:
    assert swap.networking(container_doc()) == ({}, {})


def test_networking_user_networks_primary_and_extra() -> None:
    doc = container_doc()
    doc["HostConfig"]["NetworkMode"] = "front"
    doc["NetworkSettings"]["Networks"] = {
        "front": {"Aliases": ["api", CONTAINER_ID[:12]], "IPAMConfig": {"IPv4Address": "10.0.0.5"}, "Links": None},
        "back": {"Aliases": [CONTAINER_ID[:12]], "IPAMConfig": None},
    }
    create, extra = swap.networking(doc)
    assert create == {"front": {"Aliases": ["api"], "IPAMConfig": {"IPv4Address": "10.0.0.5"}}}
    assert extra == {"back": {}}


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("lab/backend:v1", ("lab/backend", "v1", None)),
        ("registry:5000/app", ("registry:5000/app", None, None)),
        ("registry:5000/app:2.1", ("registry:5000/app", "2.1", None)),
        ("app@sha256:abc", ("app", None, "sha256:abc")),
        ("r:5000/app:v1@sha256:abc", ("r:5000/app", "v1", "sha256:abc")),
    ],
)
def test_split_image_ref(ref: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_image_ref(ref) == parts


def test_ref_with_tag_reuses_the_repository() -> None:
    assert swap.ref_with_tag("lab/backend:v1", "v2") == "lab/backend:v2"
    assert swap.ref_with_tag("registry:5000/team/app@sha256:abc", "v3") == "registry:5000/team/app:v3"


def test_image_ref_maps_an_id_to_the_image_tag() -> None:
    doc = container_doc()
    doc["Config"]["Image"] = IMAGE_V1_ID
    assert swap.image_ref(doc, image_doc("v1", IMAGE_V1_ID)) == "lab/backend:v1"
    assert swap.image_ref(container_doc(), image_doc("v1", IMAGE_V1_ID)) == "lab/backend:v1"


def test_demultiplex_log_frames() -> None:
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x03ok\n" + b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert demultiplex(frames) == "ok\nerr\n"
    assert demultiplex(b"plain text") == "plain text"


# ------------------------------------------------------------------------------ swap against a fake engine


class FakeEngine:
    """Just enough of DockerClient for the Swapper, recording every mutating call."""

    docker_host = "unix:///fake.sock"

    def __init__(self, images: dict[str, dict[str, Any]], container: dict[str, Any]) -> None:
        self.images = images
        self.containers: dict[str, dict[str, Any]] = {container["Id"]: container}
        self.names: dict[str, str] = {"backend": container["Id"]}
        self.calls: list[tuple[Any, ...]] = []
        self.fail_start_of: set[str] = set()
        self.health_after_start = "healthy"
        self.created_bodies: list[dict[str, Any]] = []

    def _get(self, name_or_id: str) -> dict[str, Any] | None:
        cid = self.names.get(name_or_id, name_or_id)
        return self.containers.get(cid)

    def inspect_container(self, name: str) -> dict[str, Any] | None:
        found = self._get(name)
        return copy.deepcopy(found) if found else None

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.images.get(ref))

    def logs(self, container_id: str, tail: int = 20) -> str:
        return "boom\n"

    def create_container(self, name: str, body: dict[str, Any]) -> str:
        self.calls.append(("create", name, body["Image"]))
        self.created_bodies.append(body)
        cid = "n" * 64
        image = self.images[body["Image"]]
        self.containers[cid] = {
            "Id": cid,
            "Image": image["Id"],
            "Config": {**body, "Image": body["Image"]},
            "HostConfig": body["HostConfig"],
            "State": {"Running": False},
        }
        self.names[name] = cid
        return cid

    def connect_network(self, network: str, cid: str, endpoint: dict[str, Any]) -> None:
        self.calls.append(("connect", network))

    def stop(self, cid: str, timeout: int | None = None) -> None:
        self.calls.append(("stop", cid[:1]))
        self.containers[cid]["State"]["Running"] = False

    def start(self, cid: str) -> None:
        self.calls.append(("start", cid[:1]))
        if cid in self.fail_start_of:
            raise DockerError("port already in use", 500)
        state = self.containers[cid]["State"]
        state["Running"] = True
        if cid.startswith("n"):
            state["Health"] = {"Status": self.health_after_start, "Log": [{"Output": "HTTP 500"}]}

    def rename(self, cid: str, new_name: str) -> None:
        self.calls.append(("rename", cid[:1], new_name))
        for name, value in list(self.names.items()):
            if value == cid:
                del self.names[name]
        self.names[new_name] = cid

    def remove(self, cid: str, force: bool = False) -> None:
        self.calls.append(("remove", cid[:1]))
        self.containers.pop(cid, None)
        for name, value in list(self.names.items()):
            if value == cid:
                del self.names[name]


def engine() -> FakeEngine:
    v1, v2 = image_doc("v1", IMAGE_V1_ID), image_doc("v2", IMAGE_V2_ID)
    images = {"lab/backend:v1": v1, IMAGE_V1_ID: v1, "lab/backend:v2": v2, IMAGE_V2_ID: v2}
    return FakeEngine(images, container_doc(v1))


def params(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "backend",
        "image": "lab/backend:v2",
        "tag": None,
        "image_id": None,
        "pull": False,
        "wait_healthy": 0,
        "stop_timeout": None,
    }
    base.update(overrides)
    return base


def test_swap_sequence_creates_before_stopping_and_removes_old_last() -> None:
    eng = engine()
    result = swap.Swapper(eng, params(), check_mode=False, sleep=lambda s: None).run()
    assert result["changed"] is True
    assert result["version_before"] == "lab/backend:v1" and result["version_after"] == "lab/backend:v2"
    assert result["image_id_after"] == IMAGE_V2_ID
    assert eng.calls == [
        ("create", "backend--runbook-new", "lab/backend:v2"),
        ("stop", "c"),
        ("rename", "c", "backend--runbook-old"),
        ("rename", "n", "backend"),
        ("start", "n"),
        ("remove", "c"),
    ]
    body = eng.created_bodies[0]
    assert "APP_VERSION=v1" not in body.get("Env", []) and "APP_ENV=lab" in body["Env"]
    assert body["HostConfig"]["NetworkMode"] == "host"
    assert eng.names == {"backend": "n" * 64}


def test_swap_is_a_no_op_when_the_image_id_already_runs() -> None:
    eng = engine()
    result = swap.Swapper(eng, params(image="lab/backend:v1"), check_mode=False).run()
    assert result["changed"] is False
    assert eng.calls == []


def test_missing_image_fails_before_anything_stops() -> None:
    eng = engine()
    with pytest.raises(swap.SwapFailed) as failed:
        swap.Swapper(eng, params(image="lab/backend:v9"), check_mode=False).run()
    assert "not present" in failed.value.message and "nothing changed" in failed.value.message
    assert failed.value.unchanged is True
    assert eng.calls == []


def test_tag_resolves_against_the_current_repository() -> None:
    eng = engine()
    result = swap.Swapper(eng, params(image=None, tag="v2"), check_mode=True).run()
    assert result["version_after"] == "lab/backend:v2" and result["changed"] is True
    assert eng.calls == []  # check mode touches nothing


def test_recorded_image_id_wins_when_the_tag_moved() -> None:
    eng = engine()
    eng.images["lab/backend:v1"] = eng.images["lab/backend:v2"]  # v1 retagged onto other bytes
    eng.containers[CONTAINER_ID]["Image"] = IMAGE_V2_ID
    sw = swap.Swapper(eng, params(image="lab/backend:v1", image_id=IMAGE_V1_ID), check_mode=False)
    result = sw.run()
    assert result["image_id_after"] == IMAGE_V1_ID
    assert eng.calls[0] == ("create", "backend--runbook-new", IMAGE_V1_ID)
    assert any("now points at" in w for w in sw.warnings)


def test_failed_start_restores_the_old_container() -> None:
    eng = engine()
    eng.fail_start_of.add("n" * 64)
    with pytest.raises(swap.SwapFailed) as failed:
        swap.Swapper(eng, params(), check_mode=False).run()
    assert failed.value.restored is True
    assert "restored the old container (lab/backend:v1)" in failed.value.message
    assert eng.calls[-3:] == [("remove", "n"), ("rename", "c", "backend"), ("start", "c")]
    assert eng.names == {"backend": CONTAINER_ID}
    assert eng.containers[CONTAINER_ID]["State"]["Running"] is True


def test_unhealthy_new_container_is_replaced_by_the_old_one_when_waiting() -> None:
    eng = engine()
    eng.health_after_start = "unhealthy"
    with pytest.raises(swap.SwapFailed) as failed:
        swap.Swapper(eng, params(wait_healthy=30), check_mode=False, sleep=lambda s: None).run()
    assert "unhealthy" in failed.value.message and failed.value.restored
    assert eng.names == {"backend": CONTAINER_ID}


def test_health_wait_times_out() -> None:
    eng = engine()
    eng.health_after_start = "starting"
    ticks = iter(range(100))
    sw = swap.Swapper(
        eng, params(wait_healthy=3), check_mode=False, sleep=lambda s: None, clock=lambda: float(next(ticks))
    )
    with pytest.raises(swap.SwapFailed) as failed:
        sw.run()
    assert "not healthy within 3s" in failed.value.message


def test_interrupted_run_is_recovered_before_swapping() -> None:
    eng = engine()
    eng.names = {"backend--runbook-old": CONTAINER_ID}
    eng.containers[CONTAINER_ID]["State"]["Running"] = False
    result = swap.Swapper(eng, params(), check_mode=False).run()
    assert eng.calls[:2] == [("rename", "c", "backend"), ("start", "c")]
    assert result["changed"] is True and eng.names == {"backend": "n" * 64}


def killed_after_renaming_the_new_one(eng: FakeEngine) -> str:
    """The engine as a swap to v2 killed between rename(new -> name) and start leaves it: the old container
    stopped and aside, the new one under the name, never started."""
    eng.containers[CONTAINER_ID]["State"]["Running"] = False
    eng.names = {"backend--runbook-old": CONTAINER_ID}
    new_id = eng.create_container("backend", {"Image": "lab/backend:v2", "HostConfig": {}})
    eng.calls.clear()
    return new_id


def test_a_swap_killed_before_the_new_container_started_is_completed_not_its_old_container_deleted() -> None:
    eng = engine()
    new_id = killed_after_renaming_the_new_one(eng)
    sw = swap.Swapper(eng, params(), check_mode=False)  # the same step re-run: v2 again
    result = sw.run()
    assert eng.calls == [("start", "n"), ("remove", "c")]  # the old one goes only once the new one runs
    assert eng.names == {"backend": new_id} and eng.containers[new_id]["State"]["Running"] is True
    assert result["version_after"] == "lab/backend:v2" and any("interrupted swap" in a for a in sw.actions)


def test_a_swap_killed_before_the_new_container_started_is_undone_for_another_target() -> None:
    eng = engine()
    killed_after_renaming_the_new_one(eng)
    result = swap.Swapper(eng, params(image="lab/backend:v1"), check_mode=False).run()
    assert eng.calls == [("remove", "n"), ("rename", "c", "backend"), ("start", "c")]
    assert eng.names == {"backend": CONTAINER_ID} and result["changed"] is False


def test_an_interrupted_new_container_that_fails_to_start_puts_the_old_one_back() -> None:
    eng = engine()
    new_id = killed_after_renaming_the_new_one(eng)
    eng.fail_start_of.add(new_id)
    with pytest.raises(swap.SwapFailed) as failed:
        swap.Swapper(eng, params(), check_mode=False).run()
    assert failed.value.restored and eng.names == {"backend": CONTAINER_ID}
    assert eng.containers[CONTAINER_ID]["State"]["Running"] is True


def test_a_swap_killed_after_the_start_waits_for_health_before_the_old_one_goes() -> None:
    eng = engine()
    new_id = killed_after_renaming_the_new_one(eng)
    eng.start(new_id)
    eng.health_after_start = "unhealthy"
    eng.containers[new_id]["State"]["Health"] = {"Status": "unhealthy", "Log": [{"Output": "HTTP 500"}]}
    eng.calls.clear()
    with pytest.raises(swap.SwapFailed) as failed:
        swap.Swapper(eng, params(wait_healthy=30), check_mode=False, sleep=lambda s: None).run()
    assert failed.value.restored and eng.names == {"backend": CONTAINER_ID}


def test_a_swap_killed_after_stopping_the_old_container_starts_it_again() -> None:
    eng = engine()
    eng.containers[CONTAINER_ID]["State"]["Running"] = False
    eng.create_container("backend--runbook-new", {"Image": "lab/backend:v2", "HostConfig": {}})
    eng.fail_start_of.add("n" * 64)
    eng.calls.clear()
    with pytest.raises(swap.SwapFailed):
        swap.Swapper(eng, params(), check_mode=False).run()
    assert eng.calls[:2] == [("remove", "n"), ("start", "c")]
    assert eng.names == {"backend": CONTAINER_ID} and eng.containers[CONTAINER_ID]["State"]["Running"] is True


def test_missing_container_fails_unchanged() -> None:
    eng = engine()
    eng.names = {}
    with pytest.raises(swap.SwapFailed) as failed:
        swap.Swapper(eng, params(), check_mode=False).run()
    assert "does not exist" in failed.value.message and failed.value.unchanged


# ------------------------------------------------------------------------------------------ release ledger

NOW = "2026-01-01T00:00:00.000Z"


def rel(image: str, image_id: str) -> dict[str, Any]:
    return {"image": image, "image_id": image_id, "digests": [], "spec": {}}


V1, V2, V3 = rel("app:v1", "sha256:1"), rel("app:v2", "sha256:2"), rel("app:v3", "sha256:3")


def fresh() -> dict[str, Any]:
    return ledger_mod.empty_ledger("backend")


def test_previous_of_an_empty_ledger_is_none() -> None:
    assert ledger_mod.previous_release(fresh()) is None


def test_previous_is_the_last_verified_release_with_another_image() -> None:
    ledger = fresh()
    ledger_mod.apply_record(ledger, V2, "deploy", NOW, adopt=V1)  # adopts v1 (1), records v2 (2)
    assert [r["id"] for r in ledger["releases"]] == [1, 2]
    assert ledger_mod.previous_release(ledger) is None  # v1 was adopted, never verified
    ledger["releases"][0]["verified"] = True
    assert ledger_mod.previous_release(ledger)["id"] == 1


def test_previous_skips_unverified_and_same_image_releases() -> None:
    ledger = fresh()
    r1 = ledger_mod.append_release(ledger, V1, "deploy", NOW, verified=True)
    ledger_mod.append_release(ledger, V2, "deploy", NOW, verified=False)  # broken deploy
    ledger_mod.append_release(ledger, V1, "rollback", NOW, verified=True)  # back on v1
    assert ledger_mod.previous_release(ledger) is None  # only v1 was ever good
    ledger_mod.append_release(ledger, V3, "deploy", NOW, verified=True)
    assert ledger_mod.previous_release(ledger)["id"] == 3  # the newest verified v1, not r1
    assert r1["id"] == 1


def test_previous_never_looks_after_the_current_release() -> None:
    ledger = fresh()
    ledger_mod.append_release(ledger, V1, "deploy", NOW, verified=True)
    ledger_mod.append_release(ledger, V2, "deploy", NOW, verified=True)
    ledger_mod.append_release(ledger, V3, "deploy", NOW, verified=True)
    ledger["current"] = 2
    assert ledger_mod.previous_release(ledger)["id"] == 1


def test_previous_against_what_really_runs_when_it_drifted() -> None:
    ledger = fresh()
    ledger_mod.append_release(ledger, V1, "deploy", NOW, verified=True)
    # someone started v3 by hand: the ledger's current (v1) is now a candidate
    assert ledger_mod.previous_release(ledger, running=V3)["id"] == 1
    assert ledger_mod.previous_release(ledger, running=V1) is None


def test_last_verified_may_be_the_current_release() -> None:
    ledger = fresh()
    assert ledger_mod.last_verified_release(ledger) is None
    ledger_mod.append_release(ledger, V1, "deploy", NOW, verified=True)
    assert ledger_mod.last_verified_release(ledger)["id"] == 1  # current and verified: nothing to change
    ledger_mod.append_release(ledger, V2, "deploy", NOW)
    assert ledger_mod.last_verified_release(ledger)["id"] == 1
    ledger_mod.append_release(ledger, V3, "deploy", NOW, verified=True)
    assert ledger_mod.last_verified_release(ledger)["id"] == 3


def test_same_image_compares_ids_then_refs() -> None:
    assert ledger_mod.same_image({"image": "a:1", "image_id": "x"}, {"image": "a:2", "image_id": "x"})
    assert not ledger_mod.same_image({"image": "a:1", "image_id": "x"}, {"image": "a:1", "image_id": "y"})
    assert ledger_mod.same_image({"image": "a:1"}, {"image": "a:1", "image_id": "y"})
    assert not ledger_mod.same_image(None, V1)


def test_record_adopts_only_when_empty_or_drifted_and_is_idempotent() -> None:
    ledger = fresh()
    changed, release, adopted = ledger_mod.apply_record(ledger, V2, "deploy", NOW, adopt=V1)
    assert changed and adopted["action"] == "adopt" and adopted["verified"] is False and release["id"] == 2
    changed, release, adopted = ledger_mod.apply_record(ledger, V2, "deploy", NOW, adopt=V2)
    assert not changed and adopted is None and release["id"] == 2
    changed, release, adopted = ledger_mod.apply_record(ledger, V1, "rollback", NOW, adopt=V2, source_release=1)
    assert changed and adopted is None and release["action"] == "rollback" and release["source_release"] == 1
    changed, release, adopted = ledger_mod.apply_record(ledger, V1, "deploy", NOW, adopt=V3)  # drift to v3
    assert changed and adopted["image"] == "app:v3" and release["image"] == "app:v1"
    assert [r["id"] for r in ledger["releases"]] == [1, 2, 3, 4, 5] and ledger["current"] == 5


def test_record_of_an_intent_already_recorded_changes_nothing() -> None:
    ledger = fresh()
    ledger_mod.apply_record(ledger, V2, "deploy", NOW, adopt=V1)
    changed, release, _ = ledger_mod.apply_record(ledger, V1, "rollback", NOW, adopt=V2, intent="run-1.rollback")
    assert changed and release["intent"] == "run-1.rollback"
    # the step re-run after the control node died: what it ran before is given again as what ran before
    again, same, adopted = ledger_mod.apply_record(ledger, V1, "rollback", NOW, adopt=V2, intent="run-1.rollback")
    assert not again and same["id"] == release["id"] and adopted is None and len(ledger["releases"]) == 3


def test_record_without_adopt_on_an_empty_ledger() -> None:
    ledger = fresh()
    changed, release, adopted = ledger_mod.apply_record(ledger, V1, "deploy", NOW)
    assert changed and adopted is None and release["id"] == 1 and release["deployed_at"] == NOW


def test_mark_verified_marks_current_and_adopts_what_runs() -> None:
    ledger = fresh()
    with pytest.raises(ledger_mod.LedgerError):
        ledger_mod.apply_mark_verified(ledger, NOW)
    changed, release, adopted = ledger_mod.apply_mark_verified(ledger, NOW, running=V1)
    assert changed and adopted is release and release["verified"] and release["verified_at"] == NOW
    changed, release, adopted = ledger_mod.apply_mark_verified(ledger, NOW, running=V1)
    assert not changed and adopted is None
    ledger_mod.apply_record(ledger, V2, "deploy", NOW)
    changed, release, adopted = ledger_mod.apply_mark_verified(ledger, NOW, running=V2)
    assert changed and adopted is None and release["id"] == 2


def test_prune_keeps_current_and_previous_and_ids_stay_monotonic() -> None:
    ledger = fresh()
    ledger_mod.append_release(ledger, V1, "deploy", NOW, verified=True)
    for _ in range(5):
        ledger_mod.append_release(ledger, V2, "deploy", NOW)
    dropped = ledger_mod.prune(ledger, 2)
    assert dropped == [2, 3, 4, 5]
    assert [r["id"] for r in ledger["releases"]] == [1, 6]
    release = ledger_mod.append_release(ledger, V3, "deploy", NOW)
    assert release["id"] == 7


def test_ledger_file_round_trip_and_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = ledger_mod.ledger_path(str(tmp_path), "backend")
    assert ledger_mod.load(path, "backend")["releases"] == []
    ledger = fresh()
    ledger_mod.append_release(ledger, V1, "deploy", NOW)
    ledger_mod.save_atomic(path, ledger)
    assert ledger_mod.load(path, "backend") == ledger
    assert [p.name for p in tmp_path.iterdir()] == ["backend.json"]  # no temp file left
    Path(path).write_text("{not json")
    with pytest.raises(ledger_mod.LedgerError, match="refusing to guess"):
        ledger_mod.load(path, "backend")


def test_ledger_name_must_be_a_container_name() -> None:
    with pytest.raises(ledger_mod.LedgerError):
        ledger_mod.ledger_path("/tmp", "../etc/passwd")


def _record_many(ledger_dir: str, worker: int, count: int) -> None:
    for i in range(count):
        with ledger_mod.locked(ledger_dir, "backend"):
            path = ledger_mod.ledger_path(ledger_dir, "backend")
            ledger = ledger_mod.load(path, "backend")
            ledger_mod.apply_record(ledger, rel(f"app:w{worker}-{i}", f"sha256:{worker}-{i}"), "deploy", NOW)
            ledger_mod.save_atomic(path, ledger)


def test_concurrent_writers_never_lose_a_release(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    ledger = ledger_mod.load(ledger_mod.ledger_path(str(tmp_path), "backend"), "backend")
    assert [r["id"] for r in ledger["releases"]] == list(range(1, 41))
    assert len({r["image"] for r in ledger["releases"]}) == 40


# ------------------------------------------------------------------------------------------------ http_check


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("2", 2.0),
        (3, 3.0),
        (0.25, 0.25),
        ("1d", 86400.0),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration(text: Any, seconds: float) -> None:
    assert http_mod.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "s", "1x", "1 s", "-1s", "abc", True, -1])
def test_parse_duration_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        http_mod.parse_duration(bad)


def test_evaluate_passes_and_lists_every_mismatch() -> None:
    check = {
        "url": "u",
        "status": 200,
        "body_contains": ["ok", "v1"],
        "json": {"version": "v1", "status": "ok"},
        "max_ms": 100,
    }
    body = json.dumps({"status": "ok", "version": "v1"}).encode()
    assert http_mod.evaluate(check, 200, body, 5) == []
    problems = http_mod.evaluate(check, 500, json.dumps({"status": "fail", "version": "v2"}).encode(), 250)
    assert problems == [
        "status 500, expected 200",
        "body does not contain 'ok'",
        "body does not contain 'v1'",
        'json version is "v2", expected "v1"',
        'json status is "fail", expected "ok"',
        "took 250 ms, limit 100 ms",
    ]


def test_evaluate_status_lists_missing_keys_non_json_and_no_response() -> None:
    assert http_mod.evaluate({"url": "u", "status": [200, 204]}, 204, b"", 1) == []
    assert http_mod.evaluate({"url": "u", "json": {"a.b": 1}}, 200, b'{"a": {}}', 1) == ["json a.b missing"]
    assert http_mod.evaluate({"url": "u", "json": {"v": 1}}, 200, b"<html>", 1)[0].startswith("body is not JSON")
    assert http_mod.evaluate({"url": "u"}, None, b"", 3, error="no response: refused") == ["no response: refused"]


@pytest.mark.parametrize(
    ("expected", "actual", "match"),
    [
        ("v1", "v1", True),
        ("3", 3, True),
        (3, "3", True),
        (3, 3.0, True),
        ("true", True, True),
        (True, True, True),
        (1, True, False),
        ("v1", "v2", False),
        ({"a": 1}, {"a": 1}, True),
        ("3", 4, False),
    ],
)
def test_values_match(expected: Any, actual: Any, match: bool) -> None:
    assert http_mod.values_match(expected, actual) is match


def test_lookup_dotted_and_literal_keys() -> None:
    data = {"a.b": "literal", "a": {"b": "nested"}, "items": [{"v": 1}]}
    assert http_mod.lookup(data, "a.b") == "literal"
    assert http_mod.lookup({"a": {"b": "nested"}}, "a.b") == "nested"
    assert http_mod.lookup(data, "items.0.v") == 1


def test_run_check_retries_until_it_matches() -> None:
    answers = iter([(None, b"", 1, "no response: refused"), (500, b"{}", 2, None), (200, b'{"version":"v1"}', 3, None)])
    slept: list[float] = []
    result = http_mod.run_check(
        {"url": "http://x/health", "json": {"version": "v1"}},
        5,
        0.5,
        1.0,
        request=lambda c, t: next(answers),
        sleep=slept.append,
    )
    assert result == {
        "name": "GET http://x/health",
        "url": "http://x/health",
        "ok": True,
        "detail": "HTTP 200 in 3 ms",
        "status": 200,
        "elapsed_ms": 3,
        "attempts": 3,
    }
    assert slept == [0.5, 0.5]


def test_ordered_scenario_stops_after_a_failure() -> None:
    checks = [
        {"url": "http://x/a", "name": "a"},
        {"url": "http://x/b", "name": "b"},
        {"url": "http://x/c", "name": "c"},
    ]
    answers = {"http://x/a": (200, b"", 1, None), "http://x/b": (503, b"", 1, None), "http://x/c": (200, b"", 1, None)}
    results = http_mod.run_checks(checks, 2, 0, 1.0, request=lambda c, t: answers[c["url"]], sleep=lambda s: None)
    assert [(r["name"], r["ok"]) for r in results] == [("a", True), ("b", False), ("c", None)]
    assert results[1]["detail"] == "status 503, expected 200 (after 2 attempts)"
    assert http_mod.summary(results)[2] == {"name": "c", "ok": None, "detail": "not run: an earlier check failed"}


def test_perform_against_a_local_server() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/health" else 500
            payload = json.dumps({"status": "ok" if code == 200 else "fail", "version": "v1"}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            echo = json.loads(self.rfile.read(length))
            self.send_response(201)
            self.end_headers()
            self.wfile.write(json.dumps({"echo": echo, "ct": self.headers["Content-Type"]}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body, elapsed, error = http_mod.perform({"url": base + "/health"}, 2.0)
        assert (status, error) == (200, None) and json.loads(body)["version"] == "v1" and elapsed >= 0
        status, body, _, error = http_mod.perform({"url": base + "/broken"}, 2.0)
        assert (status, error) == (500, None) and json.loads(body)["status"] == "fail"
        status, body, _, _ = http_mod.perform({"url": base + "/orders", "method": "post", "body": {"sku": "A1"}}, 2.0)
        assert status == 201 and json.loads(body) == {"echo": {"sku": "A1"}, "ct": "application/json"}
    finally:
        server.shutdown()
        server.server_close()
    status, _, _, error = http_mod.perform({"url": base + "/health"}, 1.0)
    assert status is None and error.startswith("no response")


# ------------------------------------------------------------------ PostgreSQL modules: their connection options

PG_MODULES = ("pg_assert", "pg_dump_partial", "pg_inspect", "pg_restore_backup", "pg_migration_rollback")


def test_the_connection_options_are_documented_once_and_specified_once() -> None:
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert set(documented) == set(pg_common.LOGIN_ARGUMENT_SPEC)
    for option, spec in pg_common.LOGIN_ARGUMENT_SPEC.items():
        assert {key: documented[option].get(key) for key in spec} == spec, option
    for name in PG_MODULES:
        module = _load(name)
        doc = yaml.safe_load(module.DOCUMENTATION)
        assert doc["extends_documentation_fragment"] == ["runbook.ops.postgres"], name
        assert not set(doc["options"]) & set(documented), name
        assert module.LOGIN_ARGUMENT_SPEC is pg_common.LOGIN_ARGUMENT_SPEC


class FakeAnsibleModule:
    def __init__(self, argument_spec: dict[str, Any], supports_check_mode: bool) -> None:
        self.params = {name: spec.get("default") for name, spec in argument_spec.items()}
        self.check_mode = supports_check_mode
        self.exited: dict[str, Any] | None = None

    def exit_json(self, **result: Any) -> None:
        self.exited = dict(result, failed=False)
        raise SystemExit(0)

    def fail_json(self, **result: Any) -> None:
        self.exited = dict(result, failed=True)
        raise SystemExit(1)


def _exit_with(action: Any) -> dict[str, Any]:
    made: list[FakeAnsibleModule] = []

    def factory(**kwargs: Any) -> FakeAnsibleModule:
        made.append(FakeAnsibleModule(**kwargs))
        return made[-1]

    with pytest.raises(SystemExit):
        pg_common.exit_module(factory, action, dict(pg_common.LOGIN_ARGUMENT_SPEC, database=dict(type="str")))
    assert made[0].exited is not None
    return made[0].exited


def test_a_module_exits_with_its_result_or_fails_with_the_message() -> None:
    def ok(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        return {"changed": False, "port": params["login_port"], "check_mode": check_mode}

    def refused(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        raise pg_common.ModuleFailure("no down script", pending=["0004_x"])

    def tool_failed(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        raise pg_common.PgError("psql failed (exit 2): could not connect")

    assert _exit_with(ok) == {"changed": False, "port": 5432, "check_mode": True, "failed": False}
    assert _exit_with(refused) == {"msg": "no down script", "pending": ["0004_x"], "failed": True}
    assert _exit_with(tool_failed) == {"msg": "psql failed (exit 2): could not connect", "failed": True}


# ------------------------------------------------------------ PostgreSQL restores: rows counted as the backup does

restore_mod = _load("pg_restore_backup")


class CountingClient:
    """A PgClient that answers every count with 1700: what count(*) of a parent with its children says."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def psql(self, database: str, sql: str, what: str | None = None) -> str:
        self.sql.append(sql)
        return "1700\n"


def test_a_restore_counts_each_tables_own_rows_as_the_manifest_does() -> None:
    """The manifest counts a table's COPY data: a parent's own rows, all of them. Every count of the restore is
    of those too - ONLY the table (not its inheritance children), with row security off (as pg_dump reads)."""
    assert "FROM ONLY %I.%I" in pg_common.COUNTS_SQL and pg_common.COUNTS_SQL.startswith("SET row_security = off;")
    client = CountingClient()
    counter = restore_mod.LoadedTableCounter(client, "zoo__restore_x", [(10, "public", "parent"), (11, "S & Co", "T")])
    counter.line("pg_restore: finished item 10 TABLE DATA parent")
    counter.line("pg_restore: finished item 11 TABLE DATA S & Co T")
    assert counter.finish() == {"public.parent": 1700, '"S & Co"."T"': 1700}
    assert [sql.splitlines()[-2:] for sql in client.sql] == [
        ["SET row_security = off;", 'SELECT count(*) FROM ONLY "public"."parent";'],
        ["SET row_security = off;", 'SELECT count(*) FROM ONLY "S & Co"."T";'],
    ]
    head, tail = restore_mod.table_load_sql(
        ["parent", '"S & Co"."T"'], {"public.parent": 1000, '"S & Co"."T"': 5}, "9s"
    )
    assert head.splitlines() == [
        "SET lock_timeout = '9s';",
        "SET row_security = off;",
        "BEGIN;",
        'TRUNCATE ONLY "public"."parent", "S & Co"."T";',
    ]
    assert 'SELECT count(*) FROM ONLY "public"."parent" INTO n;\n  IF n <> 1000 ' in tail
    assert 'SELECT count(*) FROM ONLY "S & Co"."T" INTO n;\n  IF n <> 5 ' in tail


# ------------------------------------------------------------------------------------------ step intents

intents_mod = _load("step_intent")


def test_an_intent_is_kept_by_run_and_step_the_first_resolution_wins(tmp_path: Path) -> None:
    base = {"run_id": "rb-1", "step_id": "rollback", "dir": str(tmp_path / "intents")}
    assert intents_mod.run(dict(base, action="get")) == {"changed": False, "key": "rb-1.rollback", "found": False,
                                                         "intent": {}}
    first = intents_mod.run(dict(base, action="record", data={"target": "v1"}))
    assert first["intent"] == {"target": "v1"} and first["runbook_intent"] == {"target": "v1", "key": "rb-1.rollback"}
    again = intents_mod.run(dict(base, action="record", data={"target": "v0", "before": "v2"}))
    assert again["found"] and again["intent"] == {"target": "v1", "before": "v2"}
    updated = intents_mod.run(dict(base, action="update", data={"before": "v3"}))
    assert updated["intent"] == {"target": "v1", "before": "v3"}
    assert intents_mod.run(dict(base, action="get"))["intent"] == {"target": "v1", "before": "v3"}
    dry = intents_mod.run(dict(base, step_id="other", action="record", data={"x": 1}), check_mode=True)
    assert dry["intent"] == {"x": 1} and "runbook_intent" not in dry
    assert sorted(p.name for p in (tmp_path / "intents").glob("*.json")) == ["rb-1.rollback.json"]


def test_outside_a_run_no_intent_is_kept(tmp_path: Path) -> None:
    result = intents_mod.run({"run_id": "", "step_id": "rollback", "action": "record", "data": {"a": 1},
                              "dir": str(tmp_path)})
    assert result == {"changed": False, "key": "", "found": False, "intent": {}} and not list(tmp_path.iterdir())


MODULE_FILES = sorted((ROOT / "runner/collections/ansible_collections/runbook/ops/plugins/modules").glob("*.py"))


@pytest.mark.parametrize("path", MODULE_FILES, ids=[p.stem for p in MODULE_FILES])
def test_every_module_documents_itself_in_yaml_that_parses(path: Path) -> None:
    """ansible-doc and the option checks of `runbook validate` read these blocks: one that does not parse hides the
    module's options from both."""
    module = _load(path.stem)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == path.stem and doc["short_description"] and isinstance(doc.get("options", {}), dict)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
