"""Runbook -> an ordinary Ansible project, built as Python data and dumped (never string-templated).

Layout of a rendered project:
  ansible.cfg      tuned defaults, roles/collections paths
  main.yml         one play per step
  on_failure.yml   one play per on_failure step (absent when the runbook has none)
  params.yml       operator values given to `render -p` (secrets left out), all tagged !unsafe
  README.md        how to run it with plain ansible-playbook
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__
from runner.engine.yamldump import dump, mark_unsafe
from runner.language import templates
from runner.language.model import Runbook, Step
from runner.language.role_specs import find_role
from runner.paths import COLLECTIONS_DIR

HOST_WORK_GROUP = "group/runbook.ops.host_work"  # modules that stop their own work (meta/runtime.yml)
WORK_ENV = "RUNBOOK_WORK"  # the run id, on every task of a step and every process it starts on a host
WORK_HOST_ENV = "RUNBOOK_WORK_HOST"
RESET_TASK = "Reset step outputs"
RECORD_TASK = "Record step outputs"
BOOKKEEPING_TASKS = frozenset({RESET_TASK, RECORD_TASK})
STEP_TAG_PREFIX = "step_"


_PLAY_OF_STEP = re.compile(r"^Step ([a-z0-9_-]+):")


def play_name(step: Step) -> str:
    """`Step <id>: <title>`. Ansible renders a title that holds a template (`name:`, or the `hosts:` in the default
    title), so the events name the play differently; the id it starts with stays: play_step_id reads it back."""
    return f"Step {step.id}: {step.title}"


def play_step_id(play: str) -> str | None:
    """The id of the step whose play this is (by its name as ansible-runner's events carry it); None: no step's."""
    match = _PLAY_OF_STEP.match(play)
    return match.group(1) if match else None


def step_tag(step: Step) -> str:
    return STEP_TAG_PREFIX + step.id.replace("-", "_")


def task_timeout_s(timeout_s: float) -> int:
    """Ansible's timeout of each task of a step: the step's `timeout:` (a backstop, see module_timeout_s)."""
    return max(1, int(timeout_s))


def module_timeout_s(timeout_s: float) -> float:
    """The deadline a host_work module keeps itself, a little before Ansible's task timeout: the module ends its
    work and says what it left while Ansible still waits for the answer (Ansible's own timeout only stops the
    waiting, never the work on the host)."""
    limit = task_timeout_s(timeout_s)
    grace = min(30.0, max(2.0, limit * 0.2))
    return round(max(limit - grace, limit / 2), 3)


@dataclass(frozen=True)
class RenderedProject:
    files: dict[str, str]

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in sorted(self.files.items()):
            target = directory / name
            target.write_text(text, encoding="utf-8")


def render_project(
    runbook: Runbook,
    roles_paths: list[Path],
    params: dict[str, Any] | None = None,
    secret_names: frozenset[str] = frozenset(),
) -> RenderedProject:
    header = f"# Rendered by runbook {__version__} from {runbook.name} (sha256 {runbook.sha256[:16]})\n"
    files = {
        "ansible.cfg": _ansible_cfg(runbook, roles_paths),
        "main.yml": dump([_play(step, runbook, roles_paths, fatal=True) for step in runbook.steps], header),
        "README.md": _readme(runbook, bool(params is not None), secret_names),
    }
    if runbook.on_failure:
        files["on_failure.yml"] = dump(
            [_play(step, runbook, roles_paths, fatal=False) for step in runbook.on_failure], header
        )
    if params is not None:
        public = {k: v for k, v in params.items() if k not in secret_names}
        files["params.yml"] = dump({"params": mark_unsafe(public)}, header)
    return RenderedProject(files)


def extra_vars_text(params: dict[str, Any], extra: dict[str, Any]) -> str:
    """Contents of ansible-runner's env/extravars: every operator value tagged !unsafe."""
    return dump({"params": mark_unsafe(params), **mark_unsafe(extra)})


def _ansible_cfg(runbook: Runbook, roles_paths: list[Path]) -> str:
    needs_facts = any(
        (role := find_role(step.uses, roles_paths)) is not None and role.needs_facts
        for step in runbook.all_steps
    )
    lines = [
        "# Tuned for runbooks: no fact gathering unless a role needs it, pipelining, persistent SSH.",
        "[defaults]",
        "roles_path = " + ":".join(str(p) for p in roles_paths),
        f"collections_path = {COLLECTIONS_DIR}",
        f"gathering = {'smart' if needs_facts else 'explicit'}",
        "forks = 25",
        "interpreter_python = auto_silent",
        "retry_files_enabled = False",
        "host_key_checking = True",
        "timeout = 20",
        "callback_result_format = yaml",
        "",
        "[ssh_connection]",
        "pipelining = True",
        "ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15",
        "",
    ]
    return "\n".join(lines)


def _uses_secret(step: Step, runbook: Runbook, roles_paths: list[Path]) -> bool:
    """Whether the whole step must run with no_log.

    A secret param given to an option the role itself marks no_log is the role's to protect (its tasks that
    handle it are no_log, so failures stay readable); a secret anywhere else — another option, when:, hosts:,
    confirm: — hides the whole step.
    """
    secrets = runbook.secret_params
    role = find_role(step.uses, roles_paths)
    role_protected = {k for k in step.with_ if role is not None and k in role.options and role.options[k].no_log}
    texts = [step.when or "", step.confirm or "", step.hosts]
    texts += [text for key, value in step.with_.items() if key not in role_protected for text in _strings(value)]
    for text in texts:
        expression = text is step.when
        for ref in templates.references(text, expression=expression):
            if ref.root == "params" and ref.key in secrets:
                return True
    return False


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _include(
    step: Step, role_vars: dict[str, Any], secret: bool, attempt: int, attempts: int
) -> dict[str, Any]:
    name = f"Run role {step.uses}" + (f" (attempt {attempt} of {attempts})" if attempts > 1 else "")
    apply: dict[str, Any] = {}
    if step.timeout_s is not None:
        apply["timeout"] = task_timeout_s(step.timeout_s)
    if secret:
        apply["no_log"] = True
    task: dict[str, Any] = {
        "name": name,
        "ansible.builtin.include_role": {"name": step.uses, **({"apply": apply} if apply else {})},
    }
    if role_vars:
        task["vars"] = role_vars
    if step.when:
        task["when"] = step.when
    if secret:
        task["no_log"] = True
    return task


def _attempts(step: Step, role_vars: dict[str, Any], secret: bool) -> list[dict[str, Any]]:
    """The role include, wrapped in nested block/rescue once per retry (runs the same in plain Ansible)."""
    attempts = step.retries + 1
    inner: list[dict[str, Any]] = [_include(step, role_vars, secret, attempts, attempts)]
    for attempt in range(attempts - 1, 0, -1):
        inner = [
            {
                "name": f"Try role {step.uses} (attempt {attempt} of {attempts})",
                "block": [_include(step, role_vars, secret, attempt, attempts)],
                "rescue": inner,
            }
        ]
    return inner


def _play(step: Step, runbook: Runbook, roles_paths: list[Path], *, fatal: bool) -> dict[str, Any]:
    role = find_role(step.uses, roles_paths)
    prefix = role.prefix if role is not None else f"{step.uses}_"
    role_vars = {prefix + key: value for key, value in step.with_.items()}
    secret = _uses_secret(step, runbook, roles_paths)
    play: dict[str, Any] = {
        "name": play_name(step),
        "hosts": step.hosts,
        "gather_facts": False,
    }
    if step.serial is not None:
        play["serial"] = step.serial
    if fatal:
        play["any_errors_fatal"] = True
    play["tags"] = [step_tag(step)]
    play["vars"] = {
        "runbook_step_id": step.id,
        # outputs of this host, over outputs any host recorded in an earlier ansible-playbook call ("*")
        "runbook_recorded_any": "{{ (runbook_recorded_steps | default({}))['*'] | default({}) }}",
        "runbook_recorded_here": "{{ (runbook_recorded_steps | default({}))[inventory_hostname] | default({}) }}",
        "steps": "{{ runbook_recorded_any | combine(runbook_recorded_here, runbook_steps | default({})) }}",
    }
    # marks the processes of the step on the host (runbook.ops.work_state finds them after a timeout or a cancel)
    play["environment"] = {WORK_ENV: "{{ runbook_run_id | default('') }}", WORK_HOST_ENV: "{{ inventory_hostname }}"}
    if step.timeout_s is not None:
        play["module_defaults"] = {HOST_WORK_GROUP: {"runbook_timeout": module_timeout_s(step.timeout_s)}}
    play["tasks"] = [
        {"name": RESET_TASK, "ansible.builtin.set_fact": {"runbook_outputs": {}}},
        *_attempts(step, role_vars, secret),
        {
            "name": RECORD_TASK,
            "ansible.builtin.set_fact": {
                "runbook_steps": "{{ runbook_steps | default({}) | combine({runbook_step_id: runbook_outputs}) }}"
            },
        },
    ]
    return play


def _readme(runbook: Runbook, has_params_file: bool, secret_names: frozenset[str]) -> str:
    params_arg = " -e @params.yml" if has_params_file else " -e @params.yml  # write params.yml first (below)"
    lines = [
        f"# {runbook.name}: rendered Ansible project",
        "",
        f"{runbook.title or runbook.name}. Rendered from `{runbook.path.name}` (sha256 `{runbook.sha256}`).",
        "",
        "This directory is an ordinary Ansible project. `runbook run` executes it with ansible-runner and adds",
        "locks, approvals, journaling, reports and notifications; it also runs as is with plain Ansible:",
        "",
        "```sh",
        f"ansible-playbook -i INVENTORY main.yml{params_arg}",
        "# when main.yml failed, restore the service:",
        "ansible-playbook -i INVENTORY on_failure.yml -e @params.yml" if runbook.on_failure else "",
        "```",
        "",
        "`params.yml` holds the operator values under `params:`, each tagged `!unsafe` so Ansible takes them",
        "literally:",
        "",
        "```yaml",
        "params:",
    ]
    for name, param in runbook.params.items():
        if param.secret:
            lines.append(
                f"  {name}: !unsafe '...'   # secret: keep it out of this file, e.g. -e @secrets.yml (vaulted)"
            )
        else:
            default = f" (default {param.default!r})" if param.has_default else " (required)"
            lines.append(f"  {name}: !unsafe '...'   # {param.type}{default}")
    lines += ["```", ""]
    if secret_names:
        lines += [f"Secret params left out of params.yml: {', '.join(sorted(secret_names))}.", ""]
    gates = [s for s in runbook.all_steps if s.confirm]
    if gates:
        lines += [
            "Approval gates (`confirm:`) are enforced by `runbook run` only; with plain ansible-playbook,",
            "run step by step with `--tags`: " + ", ".join(f"`{step_tag(s)}`" for s in gates) + ".",
            "",
        ]
    lines += ["Steps:", ""]
    for step in runbook.steps:
        lines.append(f"- `{step.id}` ({step.uses} on `{step.hosts}`): {step.title}")
    if runbook.on_failure:
        lines += ["", "On failure:", ""]
        for step in runbook.on_failure:
            lines.append(f"- `{step.id}` ({step.uses} on `{step.hosts}`): {step.title}")
    return "\n".join(line for line in lines) + "\n"
