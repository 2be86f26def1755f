"""`runbook watch RUNBOOK STEP`: a watch step's checks sampled once, now, on the step's hosts, each value shown
against its threshold - to tune fail_if without deploying.

One ansible-playbook call of a one-task play: runbook.ops.watch_window with `once: true` and the step's options
(its `with:` over the role's defaults, templates rendered by Ansible with the params), delegated as the step
delegates it. Nothing of a run: no lease, journal, history row or report; the private directory is a temporary one.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.engine.execute import cancel_on_signals, prepare_private_dir, run_playbook, service_ansible_cfg
from runner.engine.render import extra_vars_text
from runner.engine.service_play import TaskAnswers, one_task_playbook
from runner.errors import ExecutionError, InvalidInput
from runner.language.durations import format_seconds
from runner.language.model import Runbook, Step
from runner.language.params import ResolvedParams
from runner.language.role_specs import find_role
from runner.records.redact import Redactor

WATCH_ROLE = "watch"
WATCH_TASK = "Sample each check of the watch once"
_MODULE_OPTIONS = ("checks", "window", "on_no_data", "max_provider_errors")


@dataclass(frozen=True)
class CheckValue:
    """One check's sample on one host: its value (None: no data), the threshold and whether it breaches."""

    host: str
    name: str
    provider: str
    value: float | None
    fail_if: str
    for_s: float
    verdict: str  # healthy | breached | inconclusive
    error: str = ""

    @property
    def result(self) -> str:
        return {"healthy": "ok", "breached": "BREACH"}.get(self.verdict, "NO VALUE")


@dataclass
class WatchOnce:
    step_id: str
    checks: list[CheckValue] = field(default_factory=list)
    host_errors: dict[str, str] = field(default_factory=dict)

    @property
    def breached(self) -> bool:
        return any(c.verdict == "breached" for c in self.checks)

    @property
    def ok(self) -> bool:
        """Every host answered, every check gave a value, and none breaches: an unknown is never healthy."""
        return bool(self.checks) and not self.host_errors and all(c.verdict == "healthy" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step_id, "ok": self.ok, "breached": self.breached,
                "checks": [asdict(c) for c in self.checks], "host_errors": self.host_errors}


def watch_step(runbook: Runbook, step_id: str) -> Step:
    """The runbook's watch step STEP; InvalidInput naming the watch steps there are when it is not one."""
    watches = [s.id for s in runbook.all_steps if s.uses == WATCH_ROLE]
    known = ", ".join(watches) if watches else "none"
    step = next((s for s in runbook.all_steps if s.id == step_id), None)
    if step is None:
        raise InvalidInput(f"runbook {runbook.name} has no step {step_id!r} (its watch steps: {known})")
    if step.uses != WATCH_ROLE:
        raise InvalidInput(f"step {step_id!r} of {runbook.name} uses {step.uses}, not watch (its watch steps: {known})")
    return step


def role_vars(step: Step, roles_paths: list[Path]) -> dict[str, Any]:
    """The role's variables as the step's play sets them: the role's defaults, then the step's `with:`."""
    role = find_role(step.uses, roles_paths)
    prefix = role.prefix if role is not None else f"{step.uses}_"
    defaults = {o.full_name: o.default for o in role.options.values() if o.has_default} if role is not None else {}
    return {**defaults, **{prefix + key: value for key, value in step.with_.items()}}


def playbook(step: Step, roles_paths: list[Path]) -> str:
    variables = role_vars(step, roles_paths)
    options: dict[str, Any] = {name: f"{{{{ watch_{name} }}}}" for name in _MODULE_OPTIONS}
    task = {
        "name": WATCH_TASK,
        "runbook.ops.watch_window": {**options, "once": True},
        "vars": variables,
        "delegate_to": "{{ 'localhost' if watch_delegate == 'control' else inventory_hostname }}",
    }
    return one_task_playbook(f"Watch {step.id} once", step.hosts, task, "# runbook watch: rendered by runbook-runner\n")


class WatchAnswers(TaskAnswers):
    """ansible-runner event handler: each host's sample of every check, or why it gave none."""

    no_answer = "the watch module failed"

    def __init__(self) -> None:
        super().__init__(WATCH_TASK)
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, str] = {}

    def answered(self, host: str, result: dict[str, Any]) -> None:
        checks = result.get("checks")
        self.answers[host] = [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []

    def failed(self, host: str, message: str) -> None:
        self.errors[host] = message


def check_value(host: str, check: dict[str, Any]) -> CheckValue:
    samples = [m for m in check.get("measurements") or [] if isinstance(m, dict)]
    sample = samples[0] if samples else {}
    value = sample.get("value")
    return CheckValue(
        host=host,
        name=str(check.get("name") or ""),
        provider=str(check.get("provider") or ""),
        value=float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None,
        fail_if=str(check.get("fail_if") or ""),
        for_s=float(check.get("for") or 0),
        verdict=str(check.get("verdict") or "inconclusive"),
        error=str(sample.get("error") or ("" if samples else check.get("reason") or "no sample")),
    )


def evaluate(
    runbook: Runbook, step: Step, params: ResolvedParams, inventory: Path, roles_paths: list[Path],
    limit: str | None = None,
) -> WatchOnce:
    """Sample every check of the watch step once on each of its hosts (one ansible-playbook call)."""
    base = Path(tempfile.mkdtemp(prefix="runbook-watch-"))
    cancel = threading.Event()
    try:
        project = {"watch.yml": playbook(step, roles_paths), "ansible.cfg": service_ansible_cfg()}
        prepare_private_dir(base, project, extra_vars_text(params.values, {}))
        events = WatchAnswers()
        with cancel_on_signals(cancel):
            outcome = run_playbook(base, "watch.yml", inventory, events, limit=limit, cancel=cancel)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if cancel.is_set():
        raise KeyboardInterrupt
    if not events.answers and not events.errors:
        raise ExecutionError(f"runbook watch reached no host matching {step.hosts!r} (ansible-playbook "
                             f"{outcome.status})")
    redactor = Redactor.for_run(runbook, params, roles_paths)
    result = WatchOnce(step.id, host_errors={h: redactor.text(e) for h, e in sorted(events.errors.items())})
    for host in sorted(events.answers):
        result.checks.extend(check_value(host, redactor.scrub(c)) for c in events.answers[host])
    return result


def format_text(result: WatchOnce) -> str:
    """Each check's value against its threshold, one line per host and check, then the verdict."""
    lines = [f"watch step {result.step_id}: one sample per check, now (for and the window are not applied)",
             f"  {'HOST':<12} {'CHECK':<24} {'VALUE':>12}  {'FAIL_IF':<12} {'FOR':>7}  RESULT"]
    for c in result.checks:
        value = "no data" if c.value is None else f"{c.value:.6g}"
        note = f" ({c.error})" if c.error else ""
        lines.append(f"  {c.host:<12} {c.name:<24} {value:>12}  {c.fail_if:<12} {format_seconds(c.for_s):>7}  "
                     f"{c.result}{note}")
    for host, error in result.host_errors.items():
        lines.append(f"  {host:<12} {'-':<24} {'-':>12}  {'-':<12} {'-':>7}  NO ANSWER ({error})")
    if result.breached:
        verdict = "breach: a check's fail_if holds now"
    elif result.ok:
        verdict = "ok: no check breaches"
    else:
        verdict = "not evaluated: a check gave no value or a host did not answer"
    return "\n".join([*lines, verdict]) + "\n"


__all__ = ["CheckValue", "WatchOnce", "evaluate", "format_text", "playbook", "role_vars", "watch_step"]
