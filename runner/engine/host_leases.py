"""Lease locks on the target hosts (DESIGN section 5): two runs never act on one host at once.

Each target host keeps its own lease (runbook.ops.lease_lock: /var/lib/runbook/locks/<name>.json on the host,
or the host's `runbook_lock_dir` inventory variable) with the holder's run id, owner, control-node process
(runner/engine/lease_holder.py) and a ttl, so a lease left by a dead control node expires by itself (measured on
the host by its monotonic clock) and is then taken over; sooner when its holder is provably dead.

acquire_leases runs one small playbook with ansible-runner on every target host. When any host is held by
another run it releases what it took and raises LockHeld naming the holder(s).

A runbook run takes and gives back its leases inside its own ansible-playbook calls (runner/engine/run_leases.py, with
lease_args and LeaseEvents from here); these playbooks of their own are its slow paths: leases taken before an
operator approves the first step, take-over from a dead holder, release after a failure or an interruption.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

from runner.engine.execute import ansible_env, run_ansible, service_ansible_cfg
from runner.engine.lease_holder import LEASE_FIELDS, HolderIdentity, holder_died
from runner.engine.service_play import one_task_playbook
from runner.engine.yamldump import dump, mark_unsafe
from runner.errors import ExecutionError, LockHeld

DEFAULT_NAME = "host"
DEFAULT_TTL_S = 1800
LEASE_TASK = "Runbook lease lock"


class LeaseHeld(LockHeld):
    """LockHeld (exit 4) with the holders: host -> the other run's lease (None when it could not be read)."""

    def __init__(self, message: str, name: str, holders: dict[str, dict[str, Any] | None]) -> None:
        super().__init__(message)
        self.name = name
        self.holders = holders


class Placement(TypedDict, total=False):
    """Where a lease playbook runs: an Ansible --limit, the hosts' lock directory (instead of their
    runbook_lock_dir), the control node's directory for the playbook's files (instead of a temporary one)."""

    limit: str | None
    lock_dir: str | None
    work_dir: Path | None


@dataclass(frozen=True)
class HostLease:
    """What one host answered."""

    host: str
    ok: bool
    acquired: bool = False
    unreachable: bool = False
    message: str = ""
    lease: dict[str, Any] = field(default_factory=dict)
    holder: dict[str, Any] | None = None
    taken_over: dict[str, Any] | None = None


@dataclass
class LeaseOutcome:
    hosts: dict[str, HostLease] = field(default_factory=dict)
    status: str = ""
    rc: int = 0

    @property
    def acquired(self) -> list[str]:
        return [h for h, r in self.hosts.items() if r.acquired]

    @property
    def held(self) -> dict[str, HostLease]:
        return {h: r for h, r in self.hosts.items() if not r.ok and not r.unreachable}

    @property
    def unreachable(self) -> list[str]:
        return [h for h, r in self.hosts.items() if r.unreachable]

    @property
    def taken_over(self) -> dict[str, dict[str, Any]]:
        return {h: r.taken_over for h, r in self.hosts.items() if r.taken_over}

    def report_entry(self, name: str) -> dict[str, Any]:
        """The report's `lock` key for a run that holds its leases."""
        return {"name": name, "hosts": sorted(self.acquired), "taken_over": self.taken_over, "held_by": {}}


def _pattern(hosts_pattern: str | Iterable[str]) -> str:
    if isinstance(hosts_pattern, str):
        return hosts_pattern
    parts = [p for p in hosts_pattern if p]
    return ":".join(dict.fromkeys(parts))


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def describe_holder(host: str, holder: dict[str, Any] | None, message: str = "") -> str:
    if not holder:
        return f"{host}: {message or 'held by another run'}"
    if "unreadable" in holder:
        return f"{host}: unreadable lease ({holder['unreadable']})"
    return (
        f"{host}: held by run {holder.get('run_id')} ({holder.get('owner') or 'unknown owner'}, "
        f"pid {holder.get('pid')} on {holder.get('control_host') or 'unknown host'}) until {holder.get('expires_at')}"
    )


def lease_args(action: str) -> dict[str, Any]:
    """Arguments of the runbook.ops.lease_lock task, read from the `runbook_lease` extra var of the call."""
    args: dict[str, Any] = {
        "name": "{{ runbook_lease.name }}",
        "action": action,
        "run_id": "{{ runbook_lease.run_id }}",
        "path": "{{ runbook_lock_dir | default('/var/lib/runbook/locks') }}",
    }
    if action in ("acquire", "renew"):
        args["ttl"] = "{{ runbook_lease.ttl }}"
    if action == "acquire":
        args.update({key: f"{{{{ runbook_lease.{key} }}}}" for key in ("owner", *LEASE_FIELDS)})
        args["take_over"] = "{{ runbook_lease.take_over | default([]) }}"
    if action not in ("acquire", "renew", "release"):
        del args["run_id"]  # list, force_release: whatever run holds the lease
    return args


def lease_holder_vars(run_id: str, name: str, ttl_s: float, owner: str) -> dict[str, Any]:
    """The `runbook_lease` extra var of an acquire: this run and its control-node process."""
    return {
        "name": name,
        "run_id": run_id,
        "owner": owner,
        **HolderIdentity.of_this_process().lease_fields(),
        "ttl": max(1, int(ttl_s)),
    }


def _playbook(pattern: str, action: str) -> str:
    task = {"name": LEASE_TASK, "runbook.ops.lease_lock": lease_args(action)}
    header = f"# lease {action}: rendered by runbook-runner\n"
    return one_task_playbook(f"Runbook lease ({action})", pattern, task, header)


class LeaseEvents:
    """ansible-runner event handler: what each host answered to the lease task named `task`.

    A refusal counts whether it came as a failure or, with failed_when: false, as an ok result: an acquire or
    renew is ok only when the host says `acquired`, a release only when it carries no error message.
    """

    def __init__(self, task: str = LEASE_TASK, *, release: bool = False) -> None:
        self.task = task
        self.release = release
        self.hosts: dict[str, HostLease] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        self.handle(event)
        return True

    def handle(self, event: dict[str, Any]) -> HostLease | None:
        """The host's answer when event is a result of the lease task (also kept in self.hosts), else None."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if data.get("task") != self.task or not data.get("host"):
            return None
        host = str(data["host"])
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        assert isinstance(res, dict)
        answer = _answer(host, kind, res, self.release)
        if answer is not None:
            self.hosts[host] = answer
        return answer

    def outcome(self) -> LeaseOutcome:
        return LeaseOutcome(hosts=dict(self.hosts))


def _answer(host: str, kind: str, res: dict[str, Any], release: bool) -> HostLease | None:
    message = str(res.get("msg") or "")
    if kind == "runner_on_ok":
        ok = not message if release else bool(res.get("acquired"))
        if not ok:
            return HostLease(host=host, ok=False, message=message, holder=res.get("holder") or None)
        return HostLease(
            host=host,
            ok=True,
            acquired=bool(res.get("acquired")),
            message=message,
            lease=res.get("lease") or {},
            taken_over=res.get("taken_over") or None,
        )
    if kind == "runner_on_failed":
        return HostLease(host=host, ok=False, message=message, holder=res.get("holder") or None)
    if kind == "runner_on_unreachable":
        return HostLease(host=host, ok=False, unreachable=True, message=message or "unreachable")
    return None


def _run(inventory: Path, pattern: str, action: str, lease: dict[str, Any], **where: Unpack[Placement]) -> LeaseOutcome:
    collector = LeaseEvents(release=action == "release")
    status, rc = run_lease_playbook(inventory, pattern, action, lease, collector, **where)
    return LeaseOutcome(hosts=collector.hosts, status=status, rc=rc)


def run_lease_playbook(
    inventory: Path,
    pattern: str,
    action: str,
    lease: dict[str, Any],
    handler: Callable[[dict[str, Any]], bool],
    **where: Unpack[Placement],
) -> tuple[str, int]:
    """One lease_lock `action` on every host of pattern, its events to handler; ansible-runner's status and rc.
    ExecutionError when the playbook could not run or failed before any host answered."""
    limit, lock_dir, work_dir = where.get("limit"), where.get("lock_dir"), where.get("work_dir")
    base = Path(tempfile.mkdtemp(prefix=f"lease-{action}-", dir=str(work_dir) if work_dir else None))
    try:
        project = base / "project"
        project.mkdir(parents=True)
        (project / "lease.yml").write_text(_playbook(pattern, action), encoding="utf-8")
        (project / "ansible.cfg").write_text(service_ansible_cfg(), encoding="utf-8")
        env = base / "env"
        env.mkdir()
        extravars: dict[str, Any] = {"runbook_lease": mark_unsafe(lease)}
        if lock_dir:
            extravars["runbook_lock_dir"] = mark_unsafe(str(lock_dir))
        fd = os.open(env / "extravars", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dump(extravars))
        answered: set[str] = set()

        def events(event: dict[str, Any]) -> bool:
            data = event.get("event_data") or {}
            if data.get("task") == LEASE_TASK and data.get("host") and event.get("event") != "runner_on_start":
                answered.add(str(data["host"]))
            return handler(event)

        kwargs: dict[str, Any] = {
            "private_data_dir": str(base),
            "playbook": "lease.yml",
            "inventory": str(Path(inventory).resolve()),
            "event_handler": events,
            "quiet": True,
            "settings": {"suppress_ansible_output": True},
        }
        if limit:
            kwargs["limit"] = limit
        try:
            result = run_ansible(ansible_env(project / "ansible.cfg"), **kwargs)
        except Exception as exc:
            raise ExecutionError(f"could not run the lease playbook: {exc}") from exc
        if not answered and result.status != "successful":
            raise ExecutionError(f"the lease playbook failed before reaching any host ({_last_error(base)})")
        return str(result.status), int(result.rc or 0)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _last_error(base: Path) -> str:
    for stdout in sorted(base.glob("artifacts/*/stdout")):
        lines = [line.strip() for line in stdout.read_text(errors="replace").splitlines() if "ERROR" in line]
        if lines:
            return lines[-1]
    return "no output"


def acquire_leases(
    inventory: Path, hosts_pattern: str | Iterable[str], run_id: str, ttl_s: float = DEFAULT_TTL_S, *,
    name: str = DEFAULT_NAME, owner: str | None = None, **where: Unpack[Placement],
) -> LeaseOutcome:
    """Take the lease on every host matching hosts_pattern (a pattern, or several joined as a union).

    Raises LockHeld naming every holder when any host is held by another run — after releasing the leases this
    call took. Unreachable hosts are left unlocked (the run's own steps will fail there) and listed in the
    outcome. Stale leases that were taken over are in outcome.taken_over.
    """
    pattern = _pattern(hosts_pattern)
    lease = lease_holder_vars(run_id, name, ttl_s, owner or default_owner())
    outcome = _run(inventory, pattern, "acquire", lease, **where)
    dead = sorted({str(r.holder.get("run_id")) for r in outcome.held.values() if r.holder and holder_died(r.holder)})
    if dead:
        # the holder's process is provably gone (killed, crashed): its leases are stale before they expire; take
        # them over so the run can be resumed at once
        retry = _run(inventory, ":".join(sorted(outcome.held)), "acquire", {**lease, "take_over": dead}, **where)
        outcome.hosts.update(retry.hosts)
    held = outcome.held
    if held:
        taken = outcome.acquired
        if taken:
            release_leases(inventory, ":".join(taken), run_id, name=name, lock_dir=where.get("lock_dir"),
                           work_dir=where.get("work_dir"))
        raise held_error(name, held)
    return outcome


def held_error(name: str, held: dict[str, HostLease]) -> LeaseHeld:
    """LeaseHeld (exit 4) naming every holder."""
    details = "; ".join(describe_holder(h, r.holder, r.message) for h, r in sorted(held.items()))
    return LeaseHeld(
        f"lock {name!r} is held on {len(held)} host(s): {details}",
        name,
        {h: r.holder for h, r in sorted(held.items())},
    )


def renew_leases(
    inventory: Path, hosts_pattern: str | Iterable[str], run_id: str, ttl_s: float = DEFAULT_TTL_S, *,
    name: str = DEFAULT_NAME, **where: Unpack[Placement],
) -> LeaseOutcome:
    """Extend this run's leases; hosts where the lease was lost are in outcome.held (not raised)."""
    lease = {"name": name, "run_id": run_id, "ttl": max(1, int(ttl_s))}
    return _run(inventory, _pattern(hosts_pattern), "renew", lease, **where)


def release_leases(
    inventory: Path, hosts_pattern: str | Iterable[str], run_id: str, *,
    name: str = DEFAULT_NAME, strict: bool = False, **where: Unpack[Placement],
) -> LeaseOutcome:
    """Give back this run's leases (a lease of another run is never touched). strict: raise when one refused."""
    lease = {"name": name, "run_id": run_id}
    try:
        outcome = _run(inventory, _pattern(hosts_pattern), "release", lease, **where)
    except ExecutionError:
        if strict:
            raise
        return LeaseOutcome(status="failed", rc=-1)
    if strict and outcome.held:
        details = "; ".join(describe_holder(h, r.holder, r.message) for h, r in sorted(outcome.held.items()))
        raise LockHeld(f"lock {name!r} not released: {details}")
    return outcome


__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_TTL_S",
    "HostLease",
    "LeaseEvents",
    "LeaseHeld",
    "LeaseOutcome",
    "Placement",
    "acquire_leases",
    "default_owner",
    "describe_holder",
    "held_error",
    "holder_died",
    "lease_args",
    "lease_holder_vars",
    "release_leases",
    "renew_leases",
    "run_lease_playbook",
]
