"""A run's host leases, taken and given back inside its own ansible-playbook calls (DESIGN section 5).

The rendered main.yml and on_failure.yml stay as `runbook render` prints them. Next to them, the runner's private
project gets a lease acquire playbook, a lease release playbook and, per call, a wrapper that imports the acquire
playbook, then the phase's playbook, then — when the run ends in that call — the release playbook. The lease plays
are tagged `always`, so a call limited to some steps with --tags still runs them. Their variables come from the
`runbook_lease` extra var (run id, owner, pid, ttl, target hosts), marked unsafe like every operator value.

Acquire: runbook.ops.lease_lock on every target host, registered with failed_when: false; a host unreachable then
is dropped by Ansible from every later play of the call, so no step of that call runs on a host whose lease was not
taken (RunCalls reports its steps there as unreachable for the lease); then a fail task with any_errors_fatal on
each host that refused the lease, so one host held by another run stops the call before any step on any host.
The call itself is limited to the target hosts (RunCalls passes them as --limit): a step cannot touch a host the
acquire play did not cover. Acquiring again with the same run id renews the lease, so every later call of the run
(after a `confirm:` gate, on_failure) re-checks that it still holds its hosts.

Release: only when every target host is still active in that last play — a host that failed or became
unreachable earlier in the call is not — so a run that will go on to on_failure never gives its leases back
early. Whatever is not released that way (failures, interruptions, a refused lease) is released by the runner at
the end with host_leases.release_leases, as before. RunLeases also renews the held leases every ttl/3 in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from runner.engine import host_leases
from runner.engine.inventory import StepHosts
from runner.engine.yamldump import dump
from runner.errors import ExecutionError
from runner.language.model import Step

ACQUIRE_PLAYBOOK = "runbook_lease_acquire.yml"
RELEASE_PLAYBOOK = "runbook_lease_release.yml"
ACQUIRE_PLAY = "Runbook lease (acquire)"
RELEASE_PLAY = "Runbook lease (release)"
REFUSED_TASK = "Stop when another run holds a lease"
RELEASE_TASK = "Runbook lease release"
RESULT_VAR = "runbook_lease_result"
HEADER = "# Rendered by runbook-runner for one run (not part of `runbook render`)\n"

EventHandler = Callable[[dict[str, Any]], bool]


def acquire_play() -> dict[str, Any]:
    refused = f"not ({RESULT_VAR}.acquired | default(false))"
    return {
        "name": ACQUIRE_PLAY,
        "hosts": "{{ runbook_lease.hosts }}",
        "gather_facts": False,
        "tags": ["always"],
        "tasks": [
            {
                "name": host_leases.LEASE_TASK,
                "runbook.ops.lease_lock": host_leases.lease_args("acquire"),
                "register": RESULT_VAR,
                "failed_when": False,
            },
            {
                "name": REFUSED_TASK,
                "ansible.builtin.fail": {"msg": f"{{{{ {RESULT_VAR}.msg | default('lease not acquired') }}}}"},
                "when": refused,
                "any_errors_fatal": True,
            },
        ],
    }


def release_play() -> dict[str, Any]:
    return {
        "name": RELEASE_PLAY,
        "hosts": "{{ runbook_lease.hosts }}",
        "gather_facts": False,
        "tags": ["always"],
        "tasks": [
            {
                "name": RELEASE_TASK,
                "runbook.ops.lease_lock": host_leases.lease_args("release"),
                # a host that failed or went unreachable earlier in this call is no longer in ansible_play_hosts
                "when": "ansible_play_hosts | length == runbook_lease.hosts | length",
                "failed_when": False,
                "ignore_unreachable": True,
            }
        ],
    }


def wrapper(playbook: str, *, release: bool) -> str:
    imports = [
        {"name": "Take the run's leases", "ansible.builtin.import_playbook": ACQUIRE_PLAYBOOK},
        {"name": "Run the steps", "ansible.builtin.import_playbook": playbook},
    ]
    if release:
        imports.append({"name": "Give the leases back", "ansible.builtin.import_playbook": RELEASE_PLAYBOOK})
    return dump(imports, HEADER)


def wrapper_name(playbook: str, *, release: bool) -> str:
    return f"runbook_lease_{Path(playbook).stem}{'_last' if release else ''}.yml"


class CallWatch:
    """Event handler of one call: lease answers go to the run's leases, every event then to the steps' handler.

    on_past_lease runs (once) when a play after the acquire play starts: every target host has then either
    taken its lease or was unreachable, and no step has run yet.
    """

    def __init__(self, leases: RunLeases, steps: EventHandler, on_past_lease: Callable[[], None]) -> None:
        self.leases = leases
        self.steps = steps
        self.on_past_lease = on_past_lease
        self.acquire = host_leases.LeaseEvents(host_leases.LEASE_TASK)
        self.release = host_leases.LeaseEvents(RELEASE_TASK, release=True)
        self.past_lease = False

    def __call__(self, event: dict[str, Any]) -> bool:
        took = self.acquire.handle(event)
        if took is not None:
            self.leases.took(took)
        gave = self.release.handle(event)
        if gave is not None and gave.ok:
            self.leases.gave_back(gave.host)
        if not self.past_lease and _other_play_starts(event):
            self.past_lease = True
            self.on_past_lease()
        return self.steps(event)

    def refused(self) -> dict[str, host_leases.HostLease]:
        """Hosts where another run holds the lease (empty when the call took every reachable host)."""
        return self.acquire.outcome().held

    def unreachable(self) -> dict[str, str]:
        """Hosts unreachable when the call took its leases (no step of the call ran there): host -> why."""
        return {h: r.message for h, r in sorted(self.acquire.outcome().hosts.items()) if r.unreachable}


def _other_play_starts(event: dict[str, Any]) -> bool:
    if event.get("event") != "playbook_on_play_start":
        return False
    data = event.get("event_data") or {}
    return str(data.get("play") or data.get("name") or "") != ACQUIRE_PLAY


class RunLeases:
    """The leases of one run on its target hosts: taken in its calls, renewed in a thread, released at the end."""

    def __init__(
        self,
        inventory: Path,
        targets: list[str],
        run_id: str,
        ttl_s: float,
        *,
        name: str = host_leases.DEFAULT_NAME,
        work_dir: Path | None = None,
        step_hosts: StepHosts | None = None,
    ) -> None:
        self.inventory = inventory
        self.targets = sorted(targets)
        self.step_hosts = step_hosts
        self.run_id = run_id
        self.ttl_s = ttl_s
        self.name = name
        self.work_dir = work_dir
        self.owner = host_leases.default_owner()
        self.held: dict[str, host_leases.HostLease] = {}
        self.released: set[str] = set()
        self.kept: set[str] = set()  # the run's work there was not confirmed ended: held until the lease expires
        self.taken_over: dict[str, dict[str, Any]] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ in the calls

    def extravars(self) -> dict[str, Any]:
        """The `runbook_lease` extra var the lease plays read (strings are marked unsafe by the caller)."""
        lease = host_leases.lease_holder_vars(self.run_id, self.name, self.ttl_s, self.owner)
        return {"runbook_lease": {**lease, "hosts": list(self.targets)}}

    def hosts_of(self, step: Step) -> list[str]:
        """The target hosts the step runs on."""
        return self.step_hosts.of([step]) if self.step_hosts is not None else list(self.targets)

    def playbook(self, project: Path, playbook: str, *, release: bool) -> str:
        """Write the lease playbooks and the wrapper of `playbook` into project; the wrapper's name."""
        for filename, play in ((ACQUIRE_PLAYBOOK, acquire_play()), (RELEASE_PLAYBOOK, release_play())):
            if not (project / filename).is_file():
                (project / filename).write_text(dump([play], HEADER), encoding="utf-8")
        name = wrapper_name(playbook, release=release)
        (project / name).write_text(wrapper(playbook, release=release), encoding="utf-8")
        return name

    def watch(self, steps: EventHandler, on_past_lease: Callable[[], None]) -> CallWatch:
        return CallWatch(self, steps, on_past_lease)

    def took(self, answer: host_leases.HostLease) -> None:
        if not answer.acquired:
            return
        with self._mutex:
            self.held[answer.host] = answer
            self.released.discard(answer.host)
            if answer.taken_over:
                self.taken_over[answer.host] = answer.taken_over

    def gave_back(self, host: str) -> None:
        with self._mutex:
            self.released.add(host)

    def outstanding(self) -> list[str]:
        """Hosts whose lease this run took and has not given back (nor keeps until it expires)."""
        with self._mutex:
            return sorted(h for h in self.held if h not in self.released and h not in self.kept)

    def keep(self, hosts: list[str]) -> None:
        """Neither renew nor give back these hosts' leases: they stay held until they expire (the run's work on
        them was not confirmed ended, so no other run may act there before)."""
        with self._mutex:
            self.kept.update(hosts)

    # ------------------------------------------------------------------------------ outside the calls (slow)

    def acquire_now(self) -> None:
        """Take every lease with a playbook of its own (before asking an operator to approve the first step)."""
        outcome = host_leases.acquire_leases(
            self.inventory,
            self.targets,
            self.run_id,
            self.ttl_s,
            name=self.name,
            owner=self.owner,
            work_dir=self.work_dir,
        )
        for answer in outcome.hosts.values():
            self.took(answer)

    def take_over_dead(self, refused: dict[str, host_leases.HostLease]) -> bool:
        """The first call found hosts held by other runs (no step ran). When a holder ran on this control node and
        its process is gone, take its leases over now (True: the caller runs the call again); LeaseHeld when a
        live run holds one (what this run took is given back first)."""
        if not any(host_leases.holder_died(r.holder) for r in refused.values()):
            return False
        self.acquire_now()
        return True

    def give_up(self, refused: dict[str, host_leases.HostLease]) -> NoReturn:
        """Give back what this run took and stop it: LeaseHeld (exit 4) naming the holders."""
        self.release_outstanding()
        raise host_leases.held_error(self.name, refused)

    def release_outstanding(self) -> None:
        hosts = self.outstanding()
        if not hosts:
            return
        outcome = host_leases.release_leases(self.inventory, hosts, self.run_id, name=self.name, work_dir=self.work_dir)
        for host in outcome.hosts:  # answered: released, or held by another run now; either way not ours
            self.gave_back(host)

    def report_entry(self) -> dict[str, Any]:
        with self._mutex:
            return {
                "name": self.name,
                "hosts": sorted(self.held),
                "taken_over": dict(self.taken_over),
                "held_by": {},
            }

    # ------------------------------------------------------------------------------------------ renewals

    def start_renewals(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
            self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(max(self.ttl_s / 3.0, 1.0)):
            hosts = self.outstanding()
            if not hosts:
                continue
            try:
                host_leases.renew_leases(
                    self.inventory, hosts, self.run_id, self.ttl_s, name=self.name, work_dir=self.work_dir
                )
            except ExecutionError:
                continue  # try again next period; the lease is still valid until it expires

    def finish(self) -> None:
        """Stop renewing; give back every lease the calls did not release."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.release_outstanding()


__all__ = [
    "ACQUIRE_PLAY",
    "RELEASE_PLAY",
    "CallWatch",
    "RunLeases",
    "acquire_play",
    "release_play",
    "wrapper",
    "wrapper_name",
]
