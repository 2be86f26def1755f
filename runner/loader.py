"""The one runbook loader: YAML with positions -> schema -> semantic checks -> typed Runbook.

Every problem is collected (not only the first) and raised together as InvalidInput.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import jsonschema

from runner import policy, templates
from runner.durations import parse_duration
from runner.errors import Diagnostic, InvalidInput
from runner.model import PHASE_MAIN, PHASE_ON_FAILURE, Notification, Param, Runbook, Step
from runner.roles import Role, available_roles, find_role, type_error
from runner.schema import schema_diagnostics
from runner.yamlsource import Located, PathKey, YamlSyntaxError, parse_yaml_file, parse_yaml_text

PARAM_KEYWORDS = ("type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "items")


def load_runbook(path: str | Path, roles_paths: list[Path]) -> Runbook:
    """Load and fully validate a runbook file; raise InvalidInput listing every problem."""
    file = Path(path)
    try:
        located = parse_yaml_file(file)
    except YamlSyntaxError as exc:
        raise InvalidInput(str(exc.diagnostic), [exc.diagnostic]) from None
    return _validate(located, file, roles_paths)


def load_runbook_text(text: str, file: str, roles_paths: list[Path]) -> Runbook:
    try:
        located = parse_yaml_text(text, file)
    except YamlSyntaxError as exc:
        raise InvalidInput(str(exc.diagnostic), [exc.diagnostic]) from None
    return _validate(located, Path(file), roles_paths)


def _validate(located: Located, file: Path, roles_paths: list[Path]) -> Runbook:
    data = located.data
    if data is None:
        diag = Diagnostic(
            located.file, 1, 1, "empty file: expected a runbook (apiVersion, kind, metadata, spec)"
        )
        raise InvalidInput(str(diag), [diag])
    if not isinstance(data, dict):
        diag = located.diagnostic((), "a runbook must be a mapping with apiVersion, kind, metadata and spec")
        raise InvalidInput(str(diag), [diag])
    problems = schema_diagnostics(located, "runbook.schema.json")
    checker = _SemanticChecker(located, roles_paths)
    runbook = checker.build()
    problems += checker.problems
    if problems:
        problems = sorted(dict.fromkeys(problems), key=lambda d: (d.line, d.column, d.message))
        raise InvalidInput("\n".join(map(str, problems)), problems)
    assert runbook is not None
    return runbook


class _SemanticChecker:
    """Checks the schema cannot express; tolerant of schema errors so it can report alongside them."""

    def __init__(self, located: Located, roles_paths: list[Path]) -> None:
        self.located = located
        self.roles_paths = roles_paths
        self.problems: list[Diagnostic] = []

    def error(self, path: PathKey, message: str, *, key: bool = False) -> None:
        self.problems.append(self.located.diagnostic(path, message, key=key))

    def build(self) -> Runbook | None:
        data = self.located.data
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
        params = self._params(spec.get("params"))
        severity = metadata.get("severity", "SEV3")
        budget_s, budget_from = self._budget(spec.get("budget"), severity)
        seen_ids: dict[str, PathKey] = {}
        main = self._steps(spec.get("steps"), ("spec", "steps"), PHASE_MAIN, params, seen_ids, set())
        earlier = {step.id for step in main}
        on_failure = self._steps(
            spec.get("on_failure"), ("spec", "on_failure"), PHASE_ON_FAILURE, params, seen_ids, earlier
        )
        notify = self._notify(spec.get("notify"), params)
        if self.problems:
            return None
        try:
            return Runbook(
                path=Path(self.located.file),
                name=str(metadata["name"]),
                title=str(metadata.get("title", "")),
                severity=str(severity),
                owner=str(metadata.get("owner", "")),
                tags=tuple(metadata.get("tags", ())),
                params=params,
                budget_s=budget_s,
                budget_from=budget_from,
                lock=str(spec.get("lock", "host")),
                steps=tuple(main),
                on_failure=tuple(on_failure),
                notify=tuple(notify),
                sha256=hashlib.sha256(Path(self.located.file).read_bytes()).hexdigest()
                if Path(self.located.file).is_file()
                else "",
            )
        except (KeyError, TypeError, ValueError):
            return None  # the schema errors already say why

    def _params(self, raw: Any) -> dict[str, Param]:
        params: dict[str, Param] = {}
        if not isinstance(raw, dict):
            return params
        for name, spec in raw.items():
            if not isinstance(spec, dict):
                continue
            schema = {k: spec[k] for k in PARAM_KEYWORDS if k in spec}
            schema.setdefault("type", "string")
            param = Param(
                name=str(name),
                schema=schema,
                secret=bool(spec.get("secret", False)),
                has_default="default" in spec,
                default=spec.get("default"),
                description=str(spec.get("description", "")),
            )
            if param.has_default and param.default is not None:
                self._check_default(param, ("spec", "params", str(name), "default"))
            if "pattern" in spec and isinstance(spec["pattern"], str):
                import re

                try:
                    re.compile(spec["pattern"])
                except re.error as exc:
                    self.error(("spec", "params", str(name), "pattern"), f"invalid regular expression: {exc}")
            params[str(name)] = param
        return params

    def _check_default(self, param: Param, path: PathKey) -> None:
        try:
            validator = jsonschema.Draft202012Validator(param.schema)
            for error in validator.iter_errors(param.default):
                self.error(path, f"default {param.default!r} breaks the param's own rule: {error.message}")
        except jsonschema.SchemaError as exc:
            self.error(path[:-1], f"invalid param definition: {exc.message}")

    def _budget(self, raw: Any, severity: Any) -> tuple[float, str]:
        if isinstance(raw, str):
            try:
                return parse_duration(raw), "runbook"
            except ValueError:
                return 0.0, "runbook"  # the schema reports the bad duration
        try:
            return policy.response_target_s(str(severity)), "severity policy"
        except (KeyError, ValueError):
            return 0.0, "severity policy"

    def _steps(
        self,
        raw: Any,
        base: PathKey,
        phase: str,
        params: dict[str, Param],
        seen_ids: dict[str, PathKey],
        earlier: set[str],
    ) -> list[Step]:
        steps: list[Step] = []
        if not isinstance(raw, list):
            return steps
        available = set(earlier)
        for index, item in enumerate(raw):
            path = (*base, index)
            if not isinstance(item, dict):
                continue
            step_id = item.get("id")
            if isinstance(step_id, str):
                if step_id in seen_ids:
                    first = self.located.where((*seen_ids[step_id], "id"))
                    self.error(
                        (*path, "id"), f"duplicate step id {step_id!r} (first defined at line {first[0]})"
                    )
                else:
                    seen_ids[step_id] = path
            role = self._role(item.get("uses"), (*path, "uses"))
            raw_with = item.get("with")
            with_: dict[str, Any] = raw_with if isinstance(raw_with, dict) else {}
            if role is not None and isinstance(item.get("with", {}), dict):
                self._check_with(role, with_, (*path, "with"))
            self._check_templates(item, path, params, available)
            timeout_s = None
            if isinstance(item.get("timeout"), str):
                with contextlib.suppress(ValueError):
                    timeout_s = parse_duration(item["timeout"])
                if timeout_s is not None and timeout_s <= 0:
                    self.error((*path, "timeout"), "timeout must be longer than zero")
            if isinstance(step_id, str) and isinstance(item.get("uses"), str):
                steps.append(
                    Step(
                        id=step_id,
                        uses=item["uses"],
                        hosts=str(item.get("hosts", "")),
                        phase=phase,
                        name=str(item.get("name", "")),
                        with_=dict(with_),
                        timeout_s=timeout_s,
                        retries=int(item.get("retries", 0)) if isinstance(item.get("retries", 0), int) else 0,
                        serial=item.get("serial"),
                        when=item.get("when") if isinstance(item.get("when"), str) else None,
                        confirm=item.get("confirm") if isinstance(item.get("confirm"), str) else None,
                        index=index,
                    )
                )
                available.add(step_id)
        return steps

    def _role(self, name: Any, path: PathKey) -> Role | None:
        if not isinstance(name, str):
            return None
        role = find_role(name, self.roles_paths)
        if role is None:
            known = available_roles(self.roles_paths)
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (available: {', '.join(known)})"
            self.error(path, f"unknown role {name!r}{hint}")
        return role

    def _check_with(self, role: Role, with_: dict[str, Any], path: PathKey) -> None:
        for key, value in with_.items():
            option = role.options.get(key)
            if option is None:
                if key.startswith(role.prefix) and key[len(role.prefix) :] in role.options:
                    hint = f"; write it without the role prefix: {key[len(role.prefix) :]!r}"
                else:
                    suggestion = role.suggest(key)
                    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
                self.error((*path, key), f"role {role.name} has no option {key!r}{hint}", key=True)
                continue
            problem = type_error(option, value)
            if problem:
                self.error((*path, key), f"option {key!r} of role {role.name} {problem}")
        for option in role.options.values():
            if option.required and option.name not in with_:
                self.error(path if with_ else path[:-1], f"role {role.name} needs option {option.name!r}")

    def _check_templates(
        self, item: dict[str, Any], path: PathKey, params: dict[str, Param], available: set[str]
    ) -> None:
        for sub_path, text, expression in _template_fields(item, path):
            message = templates.syntax_error(text, expression=expression)
            if message:
                self.error(sub_path, message)
                continue
            for ref in templates.references(text, expression=expression):
                if ref.root == "params" and ref.key not in params:
                    self.error(sub_path, f"template uses undefined param {ref.key!r}")
                elif ref.root == "steps" and ref.key not in available:
                    self.error(
                        sub_path, f"template uses outputs of step {ref.key!r}, which does not run earlier"
                    )

    def _notify(self, raw: Any, params: dict[str, Param]) -> list[Notification]:
        notes: list[Notification] = []
        if not isinstance(raw, list):
            return notes
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                continue
            path = ("spec", "notify", index)
            for sub_path, text, expression in _template_fields(item, path):
                message = templates.syntax_error(text, expression=expression)
                if message:
                    self.error(sub_path, message)
                    continue
                for ref in templates.references(text):
                    if ref.root == "params" and ref.key not in params:
                        self.error(sub_path, f"template uses undefined param {ref.key!r}")
            target = {k: v for k, v in item.items() if k not in ("kind", "on")}
            notes.append(
                Notification(item["kind"], tuple(item.get("on", ("failure", "rolled_back"))), target)
            )
        return notes


def _template_fields(item: Any, path: PathKey) -> list[tuple[PathKey, str, bool]]:
    """(path, text, is_bare_expression) for every template string in a step or notification."""
    found: list[tuple[PathKey, str, bool]] = []

    def walk(node: Any, at: PathKey) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if at == path and key == "when" and isinstance(value, str):
                    found.append(((*at, key), value, True))
                else:
                    walk(value, (*at, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*at, index))
        elif isinstance(node, str) and ("{{" in node or "{%" in node or "{#" in node):
            found.append((at, node, False))

    walk(item, path)
    return found
