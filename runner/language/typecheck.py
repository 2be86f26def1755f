"""Type-check templated role options once the params are known (plan and run; validate cannot).

`attempts: "{{ params.attempts }}"` passes validate whatever the param's type; here every template whose only
free variable is `params` is evaluated with the resolved param values and the result is checked against the role
option as Ansible's argument spec validation would (the string "5" is an int, "many" is not). Templates that read
anything else (ansible_host, steps.<id>, Ansible-only filters) are left to Ansible.

Param values are data: they are passed to a sandboxed Jinja environment as variables and never parsed as
templates themselves. Secret values never appear in a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from runner.errors import Diagnostic, InvalidInput
from runner.language import templates
from runner.language.model import PHASE_MAIN, Runbook, Step
from runner.language.option_checks import RelPath, check_options
from runner.language.role_specs import find_role
from runner.language.yamlsource import Located, YamlSyntaxError, dotted, parse_yaml_file

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.S)


class _Environment(SandboxedEnvironment):
    pass


_ENV = _Environment(undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


class _CannotTell(Exception):
    """The template needs something only Ansible has (a filter, a variable): leave it to Ansible."""


@dataclass(frozen=True)
class _Rendered:
    path: RelPath
    template: str
    params: tuple[str, ...]


def check_resolved_options(runbook: Runbook, params_values: dict[str, Any], roles_paths: list[Path]) -> list[str]:
    """Problems of templated role options with these param values, as `FILE:LINE:COL: error: ...` lines."""
    return [str(d) for d in resolved_option_diagnostics(runbook, params_values, roles_paths)]


def ensure_resolved_options(runbook: Runbook, params_values: dict[str, Any], roles_paths: list[Path]) -> None:
    """Raise InvalidInput (exit status 2) listing every problem check_resolved_options finds."""
    diagnostics = resolved_option_diagnostics(runbook, params_values, roles_paths)
    if diagnostics:
        raise InvalidInput("\n".join(map(str, diagnostics)), diagnostics)


def resolved_option_diagnostics(
    runbook: Runbook, params_values: dict[str, Any], roles_paths: list[Path]
) -> list[Diagnostic]:
    located = _positions(runbook)
    secrets = runbook.secret_params
    found: list[Diagnostic] = []
    for step in runbook.all_steps:
        role = find_role(step.uses, roles_paths)
        if role is None or role.spec_problem:
            continue
        rendered: list[_Rendered] = []
        problems: list[tuple[RelPath, str]] = []
        values = _render_tree(step.with_, (), params_values, rendered, problems)
        base = _step_path(step)
        for at, message in problems:
            found.append(_diagnostic(located, runbook, (*base, *at), message))
        if not rendered:
            continue
        literal = frozenset(r.path for r in rendered)
        shown = check_options(role, values, lenient=True, literal=literal, show_values=True)
        hidden = check_options(role, values, lenient=True, literal=literal, show_values=False)
        for visible, masked in zip(shown, hidden, strict=True):
            source = next((r for r in rendered if visible.path[: len(r.path)] == r.path), None)
            if source is None:
                continue  # a problem validate already reports
            problem = masked if any(name in secrets for name in source.params) else visible
            names = ", ".join(f"params.{n}" for n in source.params) or "params"
            message = f"{problem.message} (from {source.template!r} with {names})"
            found.append(_diagnostic(located, runbook, (*base, *problem.path), message))
    return found


def _positions(runbook: Runbook) -> Located | None:
    try:
        return parse_yaml_file(runbook.path) if runbook.path.is_file() else None
    except (YamlSyntaxError, OSError, ValueError):
        return None


def _step_path(step: Step) -> RelPath:
    return ("spec", "steps" if step.phase == PHASE_MAIN else "on_failure", step.index, "with")


def _diagnostic(located: Located | None, runbook: Runbook, path: RelPath, message: str) -> Diagnostic:
    if located is not None:
        return located.diagnostic(path, message)
    return Diagnostic(str(runbook.path), 1, 1, message, dotted(path))


def _render_tree(
    value: Any,
    at: RelPath,
    params: dict[str, Any],
    rendered: list[_Rendered],
    problems: list[tuple[RelPath, str]],
) -> Any:
    """A copy of value with every params-only template replaced by its result."""
    if isinstance(value, dict):
        return {k: _render_tree(v, (*at, k), params, rendered, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, (*at, i), params, rendered, problems) for i, v in enumerate(value)]
    if not templates.is_template(value):
        return value
    text = str(value)
    names = templates.free_names(text)
    if names is None or not names <= {"params"}:
        return value
    refs = sorted({r.key for r in templates.references(text) if r.root == "params"})
    if any(name not in params for name in refs):
        return value  # a param without a value: resolve() reports it
    try:
        result = render(text, params)
    except _CannotTell:
        return value
    except Exception as exc:
        problems.append((at, f"template {text!r} fails with these params: {_reason(exc)}"))
        return value
    rendered.append(_Rendered(at, text, tuple(refs)))
    return result


def substitute_params(value: Any, params: dict[str, Any], secret_names: frozenset[str] = frozenset()) -> Any:
    """value with every template that reads only non-secret params replaced by its result (for display)."""
    if isinstance(value, dict):
        return {k: substitute_params(v, params, secret_names) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_params(v, params, secret_names) for v in value]
    if not templates.is_template(value):
        return value
    names = templates.free_names(str(value))
    refs = {r.key for r in templates.references(str(value)) if r.root == "params"}
    if names is None or not names <= {"params"} or refs & secret_names or not refs <= set(params):
        return value
    try:
        return render(str(value), params)
    except Exception:
        return value


def render(text: str, params: dict[str, Any]) -> Any:
    """Evaluate one template with params as data: a whole `{{ expr }}` keeps its type, anything else is text."""
    try:
        match = _WHOLE_EXPRESSION.match(text)
        if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
            expression = _ENV.compile_expression(match.group("expr"), undefined_to_none=False)
            result = expression(params=params)
        else:
            result = _ENV.from_string(text).render(params=params)
    except (jinja2.TemplateAssertionError, jinja2.TemplateSyntaxError) as exc:
        raise _CannotTell(str(exc)) from None  # e.g. an Ansible-only filter
    if isinstance(result, jinja2.Undefined):
        raise _CannotTell("undefined")
    return result


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
