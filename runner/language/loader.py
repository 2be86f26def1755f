"""The one runbook loader: YAML with positions -> schema -> semantic checks -> typed Runbook.

Every problem is collected (not only the first) and raised together as InvalidInput.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path
from typing import Any

import jsonschema

from runner.errors import Diagnostic, InvalidInput
from runner.language import policy, templates
from runner.language.durations import parse_duration
from runner.language.model import PHASE_MAIN, PHASE_ON_FAILURE, Notification, Param, Runbook, Step
from runner.language.role_specs import ROLE_NAME, Role, available_roles, check_options, find_role, suggest
from runner.language.schema import regex_problem, schema_diagnostics
from runner.language.yamlsource import Located, PathKey, YamlSyntaxError, parse_yaml_file, parse_yaml_text

INTERNAL_ERROR = "internal error while checking this runbook"
PARAM_KEYWORDS = ("type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "items")


def load_runbook(path: str | Path, roles_paths: list[Path]) -> Runbook:
    """Load and fully validate a runbook file; raise InvalidInput listing every problem."""
    file = Path(path)
    try:
        located = parse_yaml_file(file)
    except YamlSyntaxError as exc:
        raise InvalidInput(str(exc), exc.diagnostics) from None
    return _validate(located, file, roles_paths)


def load_runbook_text(text: str, file: str, roles_paths: list[Path]) -> Runbook:
    try:
        located = parse_yaml_text(text, file)
    except YamlSyntaxError as exc:
        raise InvalidInput(str(exc), exc.diagnostics) from None
    return _validate(located, Path(file), roles_paths)


def _validate(located: Located, file: Path, roles_paths: list[Path]) -> Runbook:
    try:
        return _validate_located(located, roles_paths)
    except InvalidInput:
        raise
    except RecursionError:
        diag = Diagnostic(located.file, 1, 1, "runbook nested too deeply to check")
        raise InvalidInput(str(diag), [diag]) from None
    except Exception as exc:  # a bug of ours must still not become a traceback for the user
        detail = f"{type(exc).__name__}: {exc}"[:200]
        diag = Diagnostic(located.file, 1, 1, f"{INTERNAL_ERROR} ({detail}); please report this file")
        raise InvalidInput(str(diag), [diag]) from None


def _validate_located(located: Located, roles_paths: list[Path]) -> Runbook:
    data = located.data
    if data is None and not located.problems:
        diag = Diagnostic(located.file, 1, 1, "empty file: expected a runbook (apiVersion, kind, metadata, spec)")
        raise InvalidInput(str(diag), [diag])
    if not isinstance(data, dict):
        problems = list(located.problems)
        if data is not None or not problems:
            problems.append(
                located.diagnostic((), "a runbook must be a mapping with apiVersion, kind, metadata and spec")
            )
        raise InvalidInput("\n".join(map(str, problems)), problems)
    checker = _SemanticChecker(located, roles_paths)
    runbook = checker.build()
    later = schema_diagnostics(located, "runbook.schema.json") + checker.problems
    # a value the YAML layer already rejected (and replaced by null) is not reported again by the schema
    spoiled = [d.path for d in located.problems]
    problems = list(located.problems) + [d for d in later if not any(_within(d.path, p) for p in spoiled)]
    if problems or runbook is None:
        if not problems:
            problems = [located.diagnostic((), "invalid runbook")]
        problems = sorted(dict.fromkeys(problems), key=lambda d: (d.line, d.column, d.message))
        raise InvalidInput("\n".join(map(str, problems)), problems)
    return runbook


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((outer + ".", outer + "[")) if outer else True


class _SemanticChecker:
    """Checks the schema cannot express; tolerant of schema errors so it can report alongside them."""

    def __init__(self, located: Located, roles_paths: list[Path]) -> None:
        self.located = located
        self.roles_paths = roles_paths
        self.problems: list[Diagnostic] = []
        self.all_ids: set[str] = set()
        self.known_roles: list[str] | None = None

    def error(self, path: PathKey, message: str, *, key: bool = False) -> None:
        self.problems.append(self.located.diagnostic(path, message, key=key))

    def build(self) -> Runbook | None:
        data = self.located.data
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
        params = self._params(spec.get("params"))
        severity = metadata.get("severity", "SEV3")
        budget_s, budget_from = self._budget(spec.get("budget"), severity)
        for section in ("steps", "on_failure"):
            if isinstance(spec.get(section), list):
                self.all_ids.update(
                    item["id"] for item in spec[section] if isinstance(item, dict) and isinstance(item.get("id"), str)
                )
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
                tags=tuple(str(t) for t in metadata.get("tags", ())),
                params=params,
                budget_s=budget_s,
                budget_from=budget_from,
                lock=str(spec.get("lock", "host")),
                steps=tuple(main),
                on_failure=tuple(on_failure),
                notify=tuple(notify),
                sha256=_sha256(self.located.file),
            )
        except (KeyError, TypeError, ValueError):
            return None  # the schema errors already say why

    # --- params ------------------------------------------------------------------------------------------

    def _params(self, raw: Any) -> dict[str, Param]:
        params: dict[str, Param] = {}
        if not isinstance(raw, dict):
            return params
        for name, spec in raw.items():
            if not isinstance(spec, dict):
                continue
            path: PathKey = ("spec", "params", str(name))
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
            if self._param_schema_ok(param, path) and param.has_default and param.default is not None:
                self._check_default(param, (*path, "default"))
            params[str(name)] = param
        return params

    def _param_schema_ok(self, param: Param, path: PathKey) -> bool:
        """Whether the param's keywords form a usable JSON Schema (the runbook schema reports most mistakes)."""
        items = param.schema.get("items")
        if isinstance(items, dict):
            try:
                jsonschema.Draft202012Validator.check_schema(items)
            except jsonschema.SchemaError as exc:
                self.error((*path, "items"), f"invalid item schema: {_first_line(exc.message)}")
                return False
            except Exception:
                self.error((*path, "items"), "invalid item schema")
                return False
        pattern = param.schema.get("pattern")
        if isinstance(pattern, str) and regex_problem(pattern) is not None:
            return False  # the schema's regex format check reports it
        try:
            jsonschema.Draft202012Validator.check_schema(param.schema)
        except Exception:
            return False  # wrong keyword types: reported by the runbook schema
        return True

    def _check_default(self, param: Param, path: PathKey) -> None:
        try:
            validator = jsonschema.Draft202012Validator(param.schema)
            for error in validator.iter_errors(param.default):
                shown = "(secret)" if param.secret else _short_repr(param.default)
                self.error(path, f"default {shown} breaks the param's own rule: {_rule_message(error)}")
        except (RecursionError, TypeError, ValueError, re.error, jsonschema.SchemaError) as exc:
            self.error(path[:-1], f"invalid param definition: {_first_line(str(exc))}")

    def _budget(self, raw: Any, severity: Any) -> tuple[float, str]:
        if isinstance(raw, str):
            try:
                seconds = parse_duration(raw)
            except ValueError:
                return 0.0, "runbook"  # the schema reports the bad duration
            if seconds <= 0:
                self.error(("spec", "budget"), "budget must be longer than zero")
            return seconds, "runbook"
        try:
            return policy.response_target_s(str(severity)), "severity policy"
        except (KeyError, ValueError, TypeError):
            return 0.0, "severity policy"

    # --- steps -------------------------------------------------------------------------------------------

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
                    self.error((*path, "id"), f"duplicate step id {step_id!r} (first defined at line {first[0]})")
                else:
                    seen_ids[step_id] = path
            role = self._role(item.get("uses"), (*path, "uses"))
            raw_with = item.get("with")
            with_: dict[str, Any] = raw_with if isinstance(raw_with, dict) else {}
            if role is not None and isinstance(item.get("with", {}), dict):
                for problem in check_options(role, with_):
                    at = (*path, "with", *problem.path)
                    if not problem.path and "with" not in item:
                        at = path  # no with: at all
                    self.error(at, problem.message, key=problem.key)
            self._check_templates(item, path, params, available)
            timeout_s = None
            if isinstance(item.get("timeout"), str):
                with contextlib.suppress(ValueError):
                    timeout_s = parse_duration(item["timeout"])
                if timeout_s is not None and timeout_s <= 0:
                    self.error((*path, "timeout"), "timeout must be longer than zero")
            if isinstance(step_id, str) and isinstance(item.get("uses"), str):
                retries = item.get("retries", 0)
                steps.append(
                    Step(
                        id=step_id,
                        uses=item["uses"],
                        hosts=str(item.get("hosts", "")),
                        phase=phase,
                        name=str(item.get("name", "")),
                        with_=dict(with_),
                        timeout_s=timeout_s,
                        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else 0,
                        serial=item.get("serial") if isinstance(item.get("serial"), (int, str)) else None,
                        when=item.get("when") if isinstance(item.get("when"), str) else None,
                        confirm=item.get("confirm") if isinstance(item.get("confirm"), str) else None,
                        index=index,
                    )
                )
                available.add(step_id)
        return steps

    def _role(self, name: Any, path: PathKey) -> Role | None:
        if not isinstance(name, str) or not ROLE_NAME.match(name):
            return None  # the schema reports a name that cannot be a role
        role = find_role(name, self.roles_paths)
        if role is None:
            if self.known_roles is None:
                self.known_roles = available_roles(self.roles_paths)
            known = self.known_roles
            close = suggest(name, known)
            hint = f"; did you mean {close!r}?" if close else f" (available: {', '.join(known) or 'none'})"
            self.error(path, f"unknown role {name!r}{hint}")
            return None
        if role.spec_problem:
            self.error(path, f"role {name} has an unreadable meta/argument_specs.yml: {role.spec_problem}")
            return None
        return role

    def _check_templates(
        self, item: dict[str, Any], path: PathKey, params: dict[str, Param], available: set[str]
    ) -> None:
        for sub_path, text, expression in _template_fields(item, path):
            message = templates.syntax_error(text, expression=expression)
            if message:
                self.error(sub_path, message)
                continue
            for ref in templates.references(text, expression=expression):
                self._check_reference(ref, sub_path, params, available)

    def _check_reference(
        self, ref: templates.Reference, at: PathKey, params: dict[str, Param], available: set[str] | None
    ) -> None:
        if ref.root == "params" and ref.key not in params:
            close = suggest(ref.key, list(params))
            hint = f"; did you mean {close!r}?" if close else ""
            self.error(at, f"template uses undefined param {ref.key!r}{hint}")
        elif ref.root == "steps" and available is None:
            self.error(at, f"template uses outputs of step {ref.key!r}; notifications cannot read step outputs")
        elif ref.root == "steps" and available is not None and ref.key not in available:
            if ref.key in self.all_ids:
                self.error(at, f"template uses outputs of step {ref.key!r}, which does not run earlier")
            else:
                close = suggest(ref.key, sorted(self.all_ids))
                hint = f"; did you mean {close!r}?" if close else ""
                self.error(at, f"template uses outputs of step {ref.key!r}, but there is no such step{hint}")

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
                    self._check_reference(ref, sub_path, params, None)
            target = {k: v for k, v in item.items() if k not in ("kind", "on")}
            on = item.get("on", ("failure", "rolled_back"))
            on = tuple(str(o) for o in on) if isinstance(on, (list, tuple)) else ()
            notes.append(Notification(item["kind"], on, target))
        return notes


def _sha256(file: str) -> str:
    try:
        return hashlib.sha256(Path(file).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _rule_message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message without repeating a long instance."""
    if error.validator == "type":
        return f"it must be of type {error.validator_value}"
    if error.validator == "enum":
        choices: Any = error.validator_value
        return "it must be one of: " + ", ".join(str(v) for v in choices)
    if error.validator == "pattern":
        return f"it does not match {error.validator_value!r}"
    if error.validator in ("minimum", "maximum", "minLength", "maxLength", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{error.validator} is {error.validator_value}"
    return _first_line(error.message)


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
