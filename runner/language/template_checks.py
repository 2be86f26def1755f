"""Checks of the Jinja templates in a step or notification: syntax, what they read, what filters and tests they call.

A template may read params the runbook declares and (in a step) outputs of steps that run earlier; it may call
the filters and tests of the place that renders it: Ansible for a step, plain Jinja for a notification.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from runner.language import plugin_names, templates
from runner.language.parts import Parts, Problem
from runner.language.role_specs import suggest
from runner.language.yamlsource import PathKey


@dataclass(frozen=True)
class TemplateChecks:
    params: list[str]  # declared param names
    step_ids: list[str]  # every step id of the runbook

    def in_step(self, parts: Parts, path: PathKey, earlier: set[str]) -> list[Problem]:
        """Every template of the step at path; earlier: ids of the steps that run before it."""
        return self._check(parts, path, earlier)

    def in_notification(self, parts: Parts, path: PathKey) -> list[Problem]:
        return self._check(parts, path, None)

    def _check(self, parts: Parts, path: PathKey, earlier: set[str] | None) -> list[Problem]:
        problems: list[Problem] = []
        for at, text, expression in _template_fields(parts, path):
            message = templates.syntax_error(text, expression=expression)
            if message:
                problems.append(Problem(at, message))
                continue
            for ref in templates.references(text, expression=expression):
                problems += self._reference(ref, at, earlier)
            for use in templates.plugin_uses(text, expression=expression):
                problems += _plugin(use, at, in_notification=earlier is None)
        return problems

    def _reference(self, ref: templates.Reference, at: PathKey, earlier: set[str] | None) -> list[Problem]:
        if ref.root == "params" and ref.key not in self.params:
            close = suggest(ref.key, self.params)
            hint = f"; did you mean {close!r}?" if close else ""
            return [Problem(at, f"template uses undefined param {ref.key!r}{hint}")]
        if ref.root != "steps":
            return []
        if earlier is None:
            return [Problem(at, f"template uses outputs of step {ref.key!r}; notifications cannot read step outputs")]
        if ref.key in earlier:
            return []
        if ref.key in self.step_ids:
            return [Problem(at, f"template uses outputs of step {ref.key!r}, which does not run earlier")]
        close = suggest(ref.key, sorted(set(self.step_ids)))
        hint = f"; did you mean {close!r}?" if close else ""
        return [Problem(at, f"template uses outputs of step {ref.key!r}, but there is no such step{hint}")]


def _plugin(use: templates.PluginUse, at: PathKey, *, in_notification: bool) -> list[Problem]:
    if in_notification:
        hint = plugin_names.unknown_in_jinja(use.kind, use.name)
        if hint is None:
            return []
        where = f"notifications are rendered with Jinja's own {use.kind}s only"
        return [Problem(at, f"template uses {use.kind} {use.name!r}, which notifications do not have ({where}){hint}")]
    hint = plugin_names.unknown_in_ansible(use.kind, use.name)
    return [] if hint is None else [Problem(at, f"template uses unknown {use.kind} {use.name!r}{hint}")]


def _template_fields(parts: Parts, path: PathKey) -> Iterator[tuple[PathKey, str, bool]]:
    """(path, text, is_bare_expression) for every valid template string in a step or notification."""

    def walk(value: object, at: PathKey) -> Iterator[tuple[PathKey, str, bool]]:
        if isinstance(value, dict):
            for sub, key, item in parts.entries(at):
                if at == path and key == "when" and isinstance(item, str):
                    yield sub, item, True
                else:
                    yield from walk(item, sub)
        elif isinstance(value, list):
            for sub, item in parts.items(at):
                yield from walk(item, sub)
        elif isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value):
            yield at, value, False

    yield from walk(parts.get(path), path)
