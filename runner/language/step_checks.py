"""Checks of the steps the schema cannot make: unique ids, known roles, `with:` against the role, templates.

A step the schema rejected, or that lacks a key every step needs, is not checked further; its id (when valid)
still counts, so that other steps' references to it and duplicates of it are judged right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.language.durations import parse_duration
from runner.language.option_checks import check_options
from runner.language.parts import Parts, Problem
from runner.language.role_specs import Role, available_roles, find_role, suggest
from runner.language.template_checks import TemplateChecks
from runner.language.yamlsource import PathKey

SECTIONS: tuple[PathKey, PathKey] = (("spec", "steps"), ("spec", "on_failure"))


def step_ids(parts: Parts) -> list[str]:
    """Every valid step id, main steps first, in file order (duplicates included)."""
    return [
        step_id
        for section in SECTIONS
        for path, _ in parts.items(section)
        if (step_id := parts.get((*path, "id"))) is not None
    ]


@dataclass
class StepChecks:
    parts: Parts
    roles_paths: list[Path]
    templates: TemplateChecks
    line_of: Callable[[PathKey], int]  # where a path is in the file (for "first defined at line N")
    problems: list[Problem] = field(default_factory=list, init=False)
    known_roles: list[str] | None = field(default=None, init=False)  # listed once, for the first unknown role

    def check(self) -> list[Problem]:
        first_seen: dict[str, PathKey] = {}
        earlier: set[str] = set()
        for section in SECTIONS:
            for path, _ in self.parts.items(section):
                step_id = self.parts.get((*path, "id"))
                if step_id is not None:
                    self._unique(step_id, path, first_seen)
                if self.parts.complete(path):
                    self._step(path, earlier)
                if step_id is not None:
                    earlier.add(step_id)
        return self.problems

    def _unique(self, step_id: str, path: PathKey, first_seen: dict[str, PathKey]) -> None:
        if step_id in first_seen:
            first = self.line_of((*first_seen[step_id], "id"))
            self.problems.append(
                Problem((*path, "id"), f"duplicate step id {step_id!r} (first defined at line {first})")
            )
        else:
            first_seen[step_id] = path

    def _step(self, path: PathKey, earlier: set[str]) -> None:
        uses = self.parts.get((*path, "uses"))
        role = self._role(uses, (*path, "uses")) if uses is not None else None
        if role is not None:
            self._options(role, path)
        self.problems += self.templates.in_step(self.parts, path, earlier)
        timeout = self.parts.get((*path, "timeout"))
        if timeout is not None and parse_duration(timeout) <= 0:
            self.problems.append(Problem((*path, "timeout"), "timeout must be longer than zero"))

    def _role(self, name: str, path: PathKey) -> Role | None:
        role = find_role(name, self.roles_paths)
        if role is None:
            if self.known_roles is None:
                self.known_roles = available_roles(self.roles_paths)
            known = self.known_roles
            close = suggest(name, known)
            hint = f"; did you mean {close!r}?" if close else f" (available: {', '.join(known) or 'none'})"
            self.problems.append(Problem(path, f"unknown role {name!r}{hint}"))
            return None
        if role.spec_problem:
            message = f"role {name} has an unreadable meta/argument_specs.yml: {role.spec_problem}"
            self.problems.append(Problem(path, message))
            return None
        return role

    def _options(self, role: Role, path: PathKey) -> None:
        with_path = (*path, "with")
        if not self.parts.has(with_path):
            for problem in check_options(role, {}):
                self.problems.append(Problem(path, problem.message, key=problem.key))  # no with: at all
            return
        with_ = self.parts.get(with_path)
        if with_ is None:
            return  # rejected by the schema
        unchecked = self.parts.rejected_within(with_path)
        for problem in check_options(role, with_, unchecked=unchecked):
            self.problems.append(Problem((*with_path, *problem.path), problem.message, key=problem.key))
