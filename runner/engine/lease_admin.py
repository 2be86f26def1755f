"""`runbook lock status` and `runbook lock release --force`: the leases kept on the hosts, and the operator's way
out when one must go before it expires (its run is known to be gone but cannot be proven dead from here).

Both run the lease_lock module on the hosts with a playbook of their own (host_leases.run_lease_playbook): action
`list` reads every lease of a host's lock directory, `force_release` removes one whatever run holds it. Every
lease removed that way is recorded in the run history (runner.records.lease_history).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine import host_leases
from runner.engine.inventory import resolve_hosts
from runner.errors import InvalidInput
from runner.language.durations import format_seconds
from runner.records import lease_history


@dataclass(frozen=True)
class LeaseState:
    """One lease kept on a host, as the host judges it (its expiry measured by the host's own clock)."""

    host: str
    name: str
    run_id: str
    owner: str
    pid: str
    control_host: str
    taken: str
    renewed: str
    expires_in_s: float
    live: bool
    unreadable: str = ""

    @classmethod
    def listed(cls, host: str, entry: dict[str, Any]) -> LeaseState:
        """From one entry of the module's `leases` (name, lease, live, expires_in_s)."""
        lease = entry["lease"]
        text = {key: str(lease.get(key, "")) for key in ("run_id", "owner", "pid", "control_host")}
        return cls(
            host=host,
            name=str(entry["name"]),
            taken=str(lease.get("acquired_at", "")),
            renewed=str(lease.get("renewed_at", "")),
            expires_in_s=float(entry["expires_in_s"]),
            live=bool(entry["live"]),
            unreadable=str(lease.get("unreadable", "")),
            **text,
        )


@dataclass(frozen=True)
class LocksReport:
    leases: list[LeaseState]
    free: list[str]  # hosts that answered and keep no lease (of the name asked for)
    no_answer: dict[str, str]  # host -> why it could not say (unreachable, the module failed)


@dataclass(frozen=True)
class ReleaseReport:
    released: list[lease_history.LeaseEvent]  # what was removed, as recorded in history
    nothing_there: list[str]  # hosts that kept no such lease
    no_answer: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.no_answer


class _Answers:
    """ansible-runner event handler: each host's result of the lease task."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.no_answer: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        kind = str(event.get("event", ""))
        if data.get("task") != host_leases.LEASE_TASK or not data.get("host"):
            return True
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        assert isinstance(res, dict)
        host = str(data["host"])
        if kind == "runner_on_ok":
            self.results[host] = res
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            self.no_answer[host] = str(res.get("msg") or kind.removeprefix("runner_on_"))
        return True


def _ask(inventory: Path, pattern: str, limit: str | None, action: str, name: str) -> tuple[list[str], _Answers]:
    hosts = resolve_hosts(inventory, [pattern], limit)[pattern]
    if not hosts:
        raise InvalidInput(f"no host in {inventory} matches {pattern!r}")
    answers = _Answers()
    host_leases.run_lease_playbook(inventory, ",".join(hosts), action, {"name": name}, answers)
    for host in hosts:
        if host not in answers.results and host not in answers.no_answer:
            answers.no_answer[host] = "no answer"
    return hosts, answers


def status(inventory: Path, hosts: str = "all", name: str | None = None, limit: str | None = None) -> LocksReport:
    """Every lease (only those named `name` when given) on the hosts matching `hosts`."""
    matched, answers = _ask(inventory, hosts, limit, "list", name or host_leases.DEFAULT_NAME)
    leases: list[LeaseState] = []
    free: list[str] = []
    for host in matched:
        if host not in answers.results:
            continue
        found = [LeaseState.listed(host, e) for e in answers.results[host]["leases"] if name in (None, e["name"])]
        leases += found
        if not found:
            free.append(host)
    return LocksReport(leases, free, {h: answers.no_answer[h] for h in matched if h in answers.no_answer})


def release(
    inventory: Path, hosts: str, state_dir: Path, *, name: str = host_leases.DEFAULT_NAME, operator: str = ""
) -> ReleaseReport:
    """Remove lease `name` on the hosts matching `hosts`, whatever run holds it; each removal goes to history."""
    matched, answers = _ask(inventory, hosts, None, "force_release", name)
    released: list[lease_history.LeaseEvent] = []
    nothing: list[str] = []
    for host in matched:
        lease = answers.results[host].get("released") if host in answers.results else None
        if isinstance(lease, dict):
            who = operator or host_leases.default_owner()
            released.append(lease_history.record_forced_release(state_dir, host, name, lease, who))
        elif host in answers.results:
            nothing.append(host)
    return ReleaseReport(released, nothing, {h: answers.no_answer[h] for h in matched if h in answers.no_answer})


def _expires(lease: LeaseState) -> str:
    if lease.unreadable:
        return f"unreadable ({lease.unreadable})"
    if lease.live:
        return format_seconds(lease.expires_in_s)
    return f"expired {format_seconds(-lease.expires_in_s)} ago"


def _holder(lease: dict[str, Any]) -> str:
    """Who held a lease as read from a host (untyped JSON)."""
    if "unreadable" in lease:
        return f"an unreadable lease ({lease['unreadable']})"
    return (
        f"run {lease.get('run_id')} ({lease.get('owner') or 'unknown owner'}, pid {lease.get('pid')} on "
        f"{lease.get('control_host') or 'unknown host'}, taken {lease.get('acquired_at')})"
    )


def format_status(report: LocksReport) -> str:
    lines = [
        f"{'HOST':<12} {'LEASE':<14} {'RUN':<44} {'OWNER':<20} {'PID':>7} {'ON':<16} "
        f"{'TAKEN':<24} {'RENEWED':<24} EXPIRES IN"
    ]
    for lease in report.leases:
        lines.append(
            f"{lease.host:<12} {lease.name:<14} {lease.run_id or '-':<44} {lease.owner or '-':<20} "
            f"{lease.pid or '-':>7} {lease.control_host or '-':<16} {lease.taken or '-':<24} "
            f"{lease.renewed or '-':<24} {_expires(lease)}"
        )
    lines += [f"{host:<12} (no lease)" for host in report.free]
    lines += [f"{host:<12} no answer: {why}" for host, why in report.no_answer.items()]
    return "\n".join(lines) + "\n"


def format_release(report: ReleaseReport) -> str:
    lines = [f"{e.host}: removed lease {e.name!r} of {_holder(e.lease)}; recorded in history" for e in report.released]
    lines += [f"{host}: no lease to remove" for host in report.nothing_there]
    lines += [f"{host}: not released, no answer: {why}" for host, why in report.no_answer.items()]
    return "\n".join(lines) + "\n"


__all__ = ["LeaseState", "LocksReport", "ReleaseReport", "format_release", "format_status", "release", "status"]
