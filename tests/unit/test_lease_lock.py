"""The lease lock: the module's logic on a temporary directory (racing processes), then
runner.engine.host_leases through
ansible-runner on two local hosts (no lab)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest
from opsmodule import load

from runner.engine import host_leases
from runner.errors import LockHeld

ll = load("lease_lock")


def at(wall: float, mono: float | None = None, boot: str = "boot-1") -> Any:
    """One moment on the host: its wall clock, its monotonic clock (the same number unless told) and boot id."""
    return ll.Clock(wall, wall if mono is None else mono, boot)


class HostClocks:
    """Stands in for the module's `time`: a wall clock and a monotonic clock that the test moves apart."""

    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 500.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> HostClocks:
    fake = HostClocks()
    monkeypatch.setattr(ll, "time", fake)
    return fake


def acquire(directory: Path, run_id: str, **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = ll.acquire(
        str(directory),
        kw.pop("name", "host"),
        run_id,
        kw.pop("owner", f"op-{run_id}@control"),
        kw.pop("pid", 4242),
        kw.pop("control_host", "control"),
        kw.pop("ttl", 60),
        **kw,
    )
    return result


def test_acquire_writes_the_lease(tmp_path: Path) -> None:
    result = acquire(tmp_path / "locks", "run-a", now=at(1_000_000.0))
    assert result["acquired"] and result["changed"] and "taken_over" not in result
    lease = json.loads((tmp_path / "locks" / "host.json").read_text())
    assert lease["run_id"] == "run-a"
    assert lease["owner"] == "op-run-a@control"
    assert lease["pid"] == 4242 and lease["control_host"] == "control"
    assert lease["acquired_at"] == "1970-01-12T13:46:40.000Z"
    assert lease["expires_at"] == "1970-01-12T13:47:40.000Z"
    assert lease["expires_epoch"] == 1_000_060.0
    assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == [".host.guard", "host.json"]


def test_live_lease_is_refused_with_the_holder(tmp_path: Path) -> None:
    acquire(tmp_path, "run-a", now=at(1000.0))
    with pytest.raises(ll.LeaseError) as caught:
        acquire(tmp_path, "run-b", now=at(1059.0))
    assert caught.value.holder["run_id"] == "run-a"
    message = str(caught.value)
    assert "held by run run-a" in message and "op-run-a@control" in message and "pid 4242 on control" in message


def test_expired_lease_is_taken_over_and_reported(tmp_path: Path) -> None:
    acquire(tmp_path, "run-a", now=at(1000.0), ttl=60)
    result = acquire(tmp_path, "run-b", now=at(1060.5))
    assert result["acquired"]
    assert result["taken_over"]["run_id"] == "run-a"
    assert json.loads((tmp_path / "host.json").read_text())["run_id"] == "run-b"


def test_unreadable_lease_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text('{"run_id": "half-writ')
    result = acquire(tmp_path, "run-b")
    assert "unreadable" in result["taken_over"]


def test_same_run_reacquires_and_renews(tmp_path: Path) -> None:
    first = acquire(tmp_path, "run-a", now=at(1000.0))
    again = acquire(tmp_path, "run-a", now=at(1030.0))
    assert again["reacquired"] and again["lease"]["acquired_at"] == first["lease"]["acquired_at"]
    renewed = ll.renew(str(tmp_path), "host", "run-a", ttl=120, now=at(1050.0))
    assert renewed["lease"]["expires_epoch"] == 1170.0
    with pytest.raises(ll.LeaseError, match="lost its lease"):
        ll.renew(str(tmp_path), "host", "run-b", ttl=120, now=at(1050.0))


def test_release_only_by_the_same_run(tmp_path: Path) -> None:
    acquire(tmp_path, "run-a")
    with pytest.raises(ll.LeaseError, match="not released") as caught:
        ll.release(str(tmp_path), "host", "run-b")
    assert caught.value.holder["run_id"] == "run-a"
    assert (tmp_path / "host.json").exists()
    assert ll.release(str(tmp_path), "host", "run-a")["changed"] is True
    assert not (tmp_path / "host.json").exists()
    assert ll.release(str(tmp_path), "host", "run-a")["changed"] is False  # idempotent
    with pytest.raises(ll.LeaseError, match="no lease"):
        ll.renew(str(tmp_path), "host", "run-a")


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    result = acquire(tmp_path, "run-a", check_mode=True)
    assert result["acquired"] and not (tmp_path / "host.json").exists()


def test_bad_names_are_refused(tmp_path: Path) -> None:
    for name in ("../etc/passwd", "", ".hidden", "a/b"):
        with pytest.raises(ll.LeaseError, match="invalid lock name"):
            acquire(tmp_path, "run-a", name=name)


def test_named_locks_are_independent(tmp_path: Path) -> None:
    acquire(tmp_path, "run-a", name="host")
    assert acquire(tmp_path, "run-b", name="db-maintenance")["acquired"]


def test_the_lease_records_its_holder_and_the_hosts_clock(tmp_path: Path) -> None:
    holder = {"control_boot_id": "control-boot", "pid_start": 123456, "pid_ns": "pid:[4026531836]"}
    acquire(tmp_path, "run-a", now=at(1000.0, mono=77.5, boot="host-boot"), identity=holder)
    lease = json.loads((tmp_path / "host.json").read_text())
    assert {k: lease[k] for k in holder} == holder
    assert (lease["host_boot_id"], lease["renewed_mono"], lease["ttl"]) == ("host-boot", 77.5, 60)


def test_a_host_clock_jumping_forward_expires_no_live_lease(tmp_path: Path, clocks: HostClocks) -> None:
    acquire(tmp_path, "run-a", ttl=60)
    clocks.wall += 86_400  # a day ahead: an NTP step, a VM restored from a snapshot
    clocks.mono += 5
    with pytest.raises(ll.LeaseError, match="held by run run-a"):
        acquire(tmp_path, "run-b")
    clocks.mono += 56  # 61 s after it was taken, by the host's own monotonic clock
    assert acquire(tmp_path, "run-b")["taken_over"]["run_id"] == "run-a"


def test_a_host_clock_jumping_back_keeps_no_lease_past_its_ttl(tmp_path: Path, clocks: HostClocks) -> None:
    acquire(tmp_path, "run-a", ttl=60)
    clocks.wall -= 3600
    clocks.mono += 61
    assert acquire(tmp_path, "run-b")["taken_over"]["run_id"] == "run-a"


def test_a_renewal_restarts_the_ttl_by_the_hosts_monotonic_clock(tmp_path: Path, clocks: HostClocks) -> None:
    acquire(tmp_path, "run-a", ttl=60)
    clocks.mono += 50
    ll.renew(str(tmp_path), "host", "run-a", ttl=60)
    clocks.mono += 50
    clocks.wall += 7200
    with pytest.raises(ll.LeaseError):
        acquire(tmp_path, "run-b")
    clocks.mono += 11
    assert acquire(tmp_path, "run-b")["acquired"]


def test_after_a_host_reboot_the_lease_expires_by_the_wall_clock(
    tmp_path: Path, clocks: HostClocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    acquire(tmp_path, "run-a", ttl=60)
    monkeypatch.setattr(ll, "boot_id", lambda: "after-the-reboot")
    clocks.mono = 3.0  # the monotonic clock restarted with the host
    clocks.wall += 30
    with pytest.raises(ll.LeaseError):
        acquire(tmp_path, "run-b")
    clocks.wall += 31
    assert acquire(tmp_path, "run-b")["taken_over"]["run_id"] == "run-a"


def test_list_shows_every_lease_and_how_long_it_still_lives(tmp_path: Path) -> None:
    acquire(tmp_path, "run-a", now=at(1000.0), ttl=60)
    acquire(tmp_path, "run-b", name="db-maintenance", now=at(1000.0), ttl=600)
    listed = ll.list_leases(str(tmp_path), now=at(1030.0))
    rows = [(e["name"], e["lease"]["run_id"], e["live"], e["expires_in_s"]) for e in listed["leases"]]
    assert rows == [("db-maintenance", "run-b", True, 570.0), ("host", "run-a", True, 30.0)]
    assert ll.list_leases(str(tmp_path), now=at(1090.0))["leases"][1]["live"] is False
    assert ll.list_leases(str(tmp_path / "absent"))["leases"] == []


def test_force_release_removes_a_lease_whatever_its_holder(tmp_path: Path) -> None:
    acquire(tmp_path, "run-a")
    removed = ll.force_release(str(tmp_path), "host")
    assert removed["changed"] is True and removed["released"]["run_id"] == "run-a"
    assert not (tmp_path / "host.json").exists()
    again = ll.force_release(str(tmp_path), "host")
    assert again["changed"] is False and again["released"] is None


# ---------------------------------------------------------------- races between processes

_CTX = multiprocessing.get_context("fork")


def _one_shot(directory: str, run_id: str, start: float, out: Any) -> None:
    while time.time() < start:
        time.sleep(0.0005)
    try:
        ll.acquire(directory, "host", run_id, "op", os.getpid(), "control", 60)
        out.put((run_id, True))
    except ll.LeaseError:
        out.put((run_id, False))


def test_100_simultaneous_acquires_have_exactly_one_winner(tmp_path: Path) -> None:
    out = _CTX.Queue()
    start = time.time() + 1.5
    procs = [_CTX.Process(target=_one_shot, args=(str(tmp_path), f"run-{i}", start, out)) for i in range(100)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    winners = [run_id for run_id, won in results if won]
    assert len(results) == 100
    assert len(winners) == 1
    assert json.loads((tmp_path / "host.json").read_text())["run_id"] == winners[0]


def _contender(directory: str, run_id: str, deadline: float, inside: str, out: Any) -> None:
    """Acquire (retrying until the deadline), prove nobody else is inside, hold briefly, release."""
    overlaps = 0
    while time.time() < deadline:
        try:
            ll.acquire(directory, "host", run_id, "op", os.getpid(), "control", 30)
        except ll.LeaseError:
            time.sleep(0.002)
            continue
        try:
            fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another holder is inside
        except FileExistsError:
            overlaps += 1
        else:
            os.close(fd)
            time.sleep(0.001)
            os.unlink(inside)
        ll.release(directory, "host", run_id)
        out.put((run_id, True, overlaps))
        return
    out.put((run_id, False, overlaps))


def test_100_racing_runs_one_holder_at_a_time(tmp_path: Path) -> None:
    out = _CTX.Queue()
    locks = tmp_path / "locks"
    inside = str(tmp_path / "inside")
    deadline = time.time() + 90
    procs = [_CTX.Process(target=_contender, args=(str(locks), f"run-{i}", deadline, inside, out)) for i in range(100)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert sum(overlaps for _, _, overlaps in results) == 0
    assert all(won for _, won, _ in results), "every run eventually got the lease"
    assert not (locks / "host.json").exists()


# ---------------------------------------------------------------- runner.engine.host_leases through ansible-runner


@pytest.fixture
def two_hosts(tmp_path: Path) -> Path:
    """Two local hosts, each with its own lock directory (as two real hosts would have)."""
    inventory = tmp_path / "hosts.yml"
    host = '{ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}", '
    inventory.write_text(
        "all:\n  children:\n    app:\n      hosts:\n"
        f"        h1: {host}runbook_lock_dir: {tmp_path / 'h1'}}}\n"
        f"        h2: {host}runbook_lock_dir: {tmp_path / 'h2'}}}\n"
    )
    return inventory


def test_acquire_leases_names_the_holder_and_releases_what_it_took(two_hosts: Path, tmp_path: Path) -> None:
    first = host_leases.acquire_leases(two_hosts, "h1", "run-a", 300, owner="alice@control")
    assert first.acquired == ["h1"]
    assert json.loads((tmp_path / "h1" / "host.json").read_text())["pid"] == os.getpid()

    with pytest.raises(LockHeld) as caught:
        host_leases.acquire_leases(two_hosts, "app", "run-b", 300, owner="bob@control")
    message = str(caught.value)
    assert "h1: held by run run-a (alice@control" in message and f"pid {os.getpid()}" in message
    assert caught.value.exit_status == 4
    assert isinstance(caught.value, host_leases.LeaseHeld) and caught.value.name == "host"
    assert caught.value.holders["h1"] is not None and caught.value.holders["h1"]["run_id"] == "run-a"
    assert not (tmp_path / "h2" / "host.json").exists(), "run-b released the lease it took on h2"

    host_leases.release_leases(two_hosts, "app", "run-b")  # not its lease: left alone
    assert (tmp_path / "h1" / "host.json").exists()
    host_leases.release_leases(two_hosts, ["h1", "h2"], "run-a", strict=True)
    assert not (tmp_path / "h1" / "host.json").exists()


def test_stale_lease_is_taken_over_through_ansible(two_hosts: Path, tmp_path: Path) -> None:
    (tmp_path / "h1").mkdir()
    stale = {"run_id": "dead-run", "owner": "x@gone", "pid": 1, "control_host": "gone", "expires_epoch": 1.0}
    (tmp_path / "h1" / "host.json").write_text(json.dumps(stale))
    outcome = host_leases.acquire_leases(two_hosts, "h1", "run-c", 60)
    assert outcome.taken_over["h1"]["run_id"] == "dead-run"
    entry = outcome.report_entry("host")
    assert entry["hosts"] == ["h1"] and entry["taken_over"]["h1"]["run_id"] == "dead-run"
    host_leases.release_leases(two_hosts, "h1", "run-c")
