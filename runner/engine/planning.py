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
Values of options marked no_log are never shown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from runner.language.model import Runbook, Step
from runner.language.role_specs import Role, find_role
from runner.language.typecheck import substitute_params

MASK = "********"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_VALUE = 60
_MAX_LINE = 240


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = str(value)
    text = " ".join(text.split())
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
) -> str:
    """One line: what the step will change where it runs (never a secret value).

    With the resolved params, templates that read only non-secret params show their values.
    """
    if role is None:
        return f"runs role {step.uses} (not found)"
    with_ = substitute_params(step.with_, params, secret_names) if params is not None else step.with_
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


def describe_steps(runbook: Runbook, roles_paths: list[Path], params: dict[str, Any] | None = None) -> dict[str, str]:
    """describe_step for every step of a runbook (main and on_failure), by step id."""
    secrets = frozenset(runbook.secret_params)
    return {
        step.id: describe_step(step, find_role(step.uses, roles_paths), params, secrets) for step in runbook.all_steps
    }
