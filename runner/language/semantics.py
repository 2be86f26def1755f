"""The checks of a runbook the schema cannot express, over the parts the schema accepted.

Params (defaults against their own rules), the budget, the steps (ids, roles, `with:`, templates, timeouts) and
the notifications (templates). Each check reads only schema-valid parts (runner.language.parts), so it never
has to guess what a wrong value was meant to be; every problem it finds is returned, not only the first.
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import Diagnostic
from runner.language.durations import parse_duration
from runner.language.param_checks import check_params, declared_params
from runner.language.parts import Parts, Problem
from runner.language.step_checks import StepChecks, step_ids
from runner.language.template_checks import TemplateChecks
from runner.language.yamlsource import Located


def semantic_diagnostics(located: Located, parts: Parts, roles_paths: list[Path]) -> list[Diagnostic]:
    templates = TemplateChecks(params=declared_params(parts), step_ids=step_ids(parts))
    problems = check_params(parts) + _budget(parts)
    problems += StepChecks(parts, roles_paths, templates, line_of=lambda path: located.where(path)[0]).check()
    for path, _ in parts.items(("spec", "notify")):
        if parts.complete(path):
            problems += templates.in_notification(parts, path)
    return [located.diagnostic(p.path, p.message, key=p.key) for p in problems]


def _budget(parts: Parts) -> list[Problem]:
    budget = parts.get(("spec", "budget"))
    if budget is not None and parse_duration(budget) <= 0:
        return [Problem(("spec", "budget"), "budget must be longer than zero")]
    return []
