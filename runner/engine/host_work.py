"""The work a step started on a host ends before the run moves on (DESIGN section 5: timeouts are enforced).

Ansible's task timeout and a cancelled ansible-playbook only stop the waiting on the control node. The modules of
the collection stop their own work (module_utils/host_work.py: a deadline a little before Ansible's, and the end
of the session that started them); every other process a step starts carries the run's RUNBOOK_WORK variables.
After a call in which a task hit Ansible's timeout, or that was cancelled (Ctrl-C, SIGTERM, SIGHUP, --timeout),
the runner asks those hosts with one playbook of its own (runbook.ops.work_state): wait for the run's work to
end, end what is left, say what it left. Only then does on_failure start and are the leases given back; a host
whose work cannot be confirmed ended keeps its lease until the lease expires, and the run says so.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.events import HostStepResult
from runner.engine.execute import prepare_private_dir, run_playbook, service_ansible_cfg
from runner.engine.run_leases import RunLeases
from runner.engine.service_play import TaskAnswers, one_task_playbook
from runner.engine.yamldump import dump, mark_unsafe
from runner.errors import ExecutionError

SETTLE_TASK = "Wait for the run's work on the host to end"
WAIT_S = 45.0  # a module cleaning up after its stop is ended 30 s + 5 s after the stop (host_work.CLEANUP_S)

Emit = Callable[..., None]


@dataclass(frozen=True)
class HostWorkState:
    """What one host said about the run's work on it."""

    host: str
    ended: bool
    message: str
    left: dict[str, Any]
    ended_processes: int = 0
    stopped: str = ""  # why the last module of the run on the host was stopped ('' when it was not)

    @property
    def notable(self) -> bool:
        """Whether the report should say it: not ended, a module was stopped or recorded what it left, or the
        runner had to end processes."""
        return not self.ended or bool(self.stopped or self.left) or self.ended_processes > 0

    def sentence(self) -> str:
        if not self.ended:
            return f"host work on {self.host} not confirmed ended ({self.message}); lease kept until it expires"
        return f"on {self.host}: {self.message}"


class SettleEvents(TaskAnswers):
    """ansible-runner event handler: each host's answer to the settle task, or why it gave none."""

    def __init__(self) -> None:
        super().__init__(SETTLE_TASK)
        self.states: dict[str, HostWorkState] = {}

    def answered(self, host: str, result: dict[str, Any]) -> None:
        self.states[host] = _answer(host, result)

    def failed(self, host: str, message: str) -> None:
        self.states[host] = HostWorkState(host, False, message, {})


def _answer(host: str, res: dict[str, Any]) -> HostWorkState:
    state = res.get("state") if isinstance(res.get("state"), dict) else {}
    assert isinstance(state, dict)
    left, ended = state.get("left"), res.get("ended_processes")
    return HostWorkState(
        host,
        bool(res.get("ended")),
        str(res.get("msg") or ""),
        left if isinstance(left, dict) else {},
        len(ended) if isinstance(ended, list) else 0,
        str(state.get("stopped") or ""),
    )


def _playbook(hosts: list[str]) -> str:
    ask = {"run_id": "{{ runbook_work_run }}", "host": "{{ inventory_hostname }}", "wait": "{{ runbook_work_wait }}"}
    task = {"name": SETTLE_TASK, "runbook.ops.work_state": ask}
    return one_task_playbook("Runbook host work", ":".join(hosts), task,
                             "# host work: rendered by runbook-runner for one run\n")


def settle(
    inventory: Path, hosts: list[str], run_id: str, work_dir: Path, wait_s: float = WAIT_S
) -> dict[str, HostWorkState]:
    """Ask every host whether the run's work on it has ended (ending what is left); host -> its answer. A host that
    gives none (unreachable, no answer in time) is not confirmed ended."""
    base = Path(tempfile.mkdtemp(prefix="host-work-", dir=str(work_dir)))
    events = SettleEvents()
    try:
        extravars = {"runbook_work_run": mark_unsafe(run_id), "runbook_work_wait": wait_s}
        project = {"settle.yml": _playbook(hosts), "ansible.cfg": service_ansible_cfg()}
        prepare_private_dir(base, project, dump(extravars))
        try:
            run_playbook(base, "settle.yml", inventory, events, timeout_s=wait_s + 60)
        except ExecutionError as exc:
            return {h: HostWorkState(h, False, str(exc), {}) for h in hosts}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {h: events.states.get(h) or HostWorkState(h, False, "the host gave no answer in time", {}) for h in hosts}


class HostWorkGuard:
    """Settles the host work of a run's calls that hit a timeout or were cancelled, remembers what was said, and
    keeps the lease of a host whose work is not confirmed ended (not renewed, not given back: it expires)."""

    def __init__(self, inventory: Path, run_id: str, work_dir: Path, journal: Callable[..., None], emit: Emit) -> None:
        self.inventory = inventory
        self.run_id = run_id
        self.work_dir = work_dir
        self.journal = journal
        self.emit = emit
        self.leases: RunLeases | None = None
        self.states: dict[str, HostWorkState] = {}

    def after_call(self, cancelled: bool, call_hosts: list[str], results: list[HostStepResult]) -> None:
        """On a cancel, every host of the call; else the hosts where a task hit Ansible's timeout."""
        hosts = call_hosts if cancelled else sorted({r.host for r in results if r.timed_out})
        if not hosts:
            return
        self.emit("host_work", hosts=hosts, cancelled=cancelled)
        for host, state in settle(self.inventory, hosts, self.run_id, self.work_dir).items():
            self.states[host] = state
            self.journal("host_work", host=host, ended=state.ended, message=state.message, left=state.left)
            self.emit("host_work_state", host=host, ended=state.ended, message=state.message)
        if self.unconfirmed and self.leases is not None:
            self.leases.keep(self.unconfirmed)

    @property
    def unconfirmed(self) -> list[str]:
        """Hosts where the run's work may still be running: their leases are kept until they expire."""
        return sorted(h for h, s in self.states.items() if not s.ended)

    def summary(self) -> str:
        """What the report says about the host work ('' when nothing notable)."""
        return "; ".join(s.sentence() for _, s in sorted(self.states.items()) if s.notable)


__all__ = ["HostWorkGuard", "HostWorkState", "SettleEvents", "settle"]
