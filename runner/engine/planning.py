"""What `runbook plan` says each step will change.

A role may describe its effect in its meta/argument_specs.yml main entry, with `{option}` placeholders filled
from the step's `with:` (or the option's default):

    argument_specs:
      main:
        attributes:                      # the spelling ansible-lint accepts
          runbook_changes:
            description: "restores database {database} from {backup} ({mode})"
            support: full
        # or, equivalently (rejected by ansible-lint's role-arg-spec schema):
        # x_runbook_changes: "restores database {database} from {backup} ({mode})"

A role without it gets a generic sentence naming the role, what it does and the options the step sets.
Values of options marked no_log are never shown. Option values are rendered with the params and the inventory
variables of the step's hosts where they can be (runner/engine/preview.py); the rest shows as <expression>.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from runner.engine.approvals import Questions
from runner.engine.host_variables import inventory_variables
from runner.engine.inventory import StepHosts
from runner.engine.preview import Preview, show
from runner.language.model import Runbook, Step
from runner.language.params import ResolvedParams
from runner.language.role_specs import Role, find_role
from runner.records.redact import Redactor

MASK = "********"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_VALUE = 60
_MAX_LINE = 240


def _show(value: Any) -> str:
    text = " ".join(show(value).split())
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def _value(step: Step, role: Role, name: str, with_: dict[str, Any]) -> str | None:
    option = role.options.get(name)
    if option is not None and option.no_log:
        return MASK
    if name in with_:
        return _show(with_[name])
    if option is not None and option.has_default and option.default not in (None, "", [], {}):
        return _show(option.default)
    if option is not None:
        return "(not set)"
    return None


def describe_step(
    step: Step,
    role: Role | None,
    params: dict[str, Any] | None = None,
    secret_names: frozenset[str] = frozenset(),
    *,
    preview: Preview | None = None,
    hosts: Sequence[str] = (),
) -> str:
    """One line: what the step will change where it runs (never a secret value).

    Its option values are rendered with the params and the inventory variables of its hosts where they can be
    (preview); what only the run knows shows as <expression>.
    """
    if role is None:
        return f"runs role {step.uses} (not found)"
    preview = preview or Preview(params or {}, secret_names)
    with_ = {name: preview.value(value, hosts) for name, value in step.with_.items()}
    if role.changes:

        def fill(match: re.Match[str]) -> str:
            value = _value(step, role, match.group(1), with_)
            return value if value is not None else match.group(0)

        return " ".join(_PLACEHOLDER.sub(fill, role.changes).split())
    summary = role.short_description.split(" - ")[0].rstrip(".") if role.short_description else ""
    text = f"runs role {role.name}" + (f": {summary}" if summary else "")
    given = [f"{name}={_value(step, role, name, with_) or _show(value)}" for name, value in with_.items()]
    if given:
        text += " (" + ", ".join(given) + ")"
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 3] + "..."


def describe_steps(
    runbook: Runbook,
    roles_paths: list[Path],
    params: dict[str, Any] | None = None,
    *,
    preview: Preview | None = None,
    hosts: StepHosts | None = None,
) -> dict[str, str]:
    """describe_step for every step of a runbook (main and on_failure), by step id."""
    preview = preview or Preview(params or {}, frozenset(runbook.secret_params))
    return {
        step.id: describe_step(
            step,
            find_role(step.uses, roles_paths),
            preview=preview,
            hosts=hosts.by_pattern.get(step.hosts, []) if hosts is not None else (),
        )
        for step in runbook.all_steps
    }


@dataclass(frozen=True)
class PlanTexts:
    """What `runbook plan` shows of each step, by step id: what it changes, and its approval question as the
    run will ask it."""

    changes: dict[str, str]
    questions: dict[str, str]


def plan_texts(
    runbook: Runbook, roles_paths: list[Path], params: ResolvedParams | None, inventory: Path, hosts: StepHosts
) -> PlanTexts:
    params = params if params is not None else ResolvedParams({}, frozenset(runbook.secret_params))
    variables = partial(inventory_variables, inventory, hosts.of(runbook.all_steps))
    preview = Preview(params.values, params.secret_names, variables)
    questions = Questions(preview, hosts, Redactor.for_run(runbook, params, roles_paths))
    return PlanTexts(
        changes=describe_steps(runbook, roles_paths, preview=preview, hosts=hosts),
        questions={step.id: questions.of(step) for step in runbook.all_steps if step.confirm},
    )
