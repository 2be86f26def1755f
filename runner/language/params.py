"""Operator-given param values: parsed, coerced to the declared type, checked, never turned into code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from runner.errors import Diagnostic, InvalidInput
from runner.language.model import Param, Runbook
from runner.language.value_limits import TOO_DEEP, LimitProblem, int_from_text, looks_like_int, value_problem
from runner.language.yamlsource import YamlSyntaxError, dotted, parse_yaml_file

SECRET_MASK = "********"
_ABSENT = object()  # a param with no value given and no default


@dataclass(frozen=True)
class ResolvedParams:
    values: dict[str, Any]
    secret_names: frozenset[str] = field(default_factory=frozenset)

    def masked(self) -> dict[str, Any]:
        return {k: (SECRET_MASK if k in self.secret_names else v) for k, v in self.values.items()}

    def secret_values(self) -> list[str]:
        return [str(self.values[k]) for k in self.secret_names if self.values.get(k) not in (None, "")]


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """-p key=value (value kept byte for byte, '=' allowed inside it)."""
    given: dict[str, str] = {}
    problems: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            problems.append(f"-p {pair!r}: expected key=value")
            continue
        given[key.strip()] = value
    if problems:
        raise InvalidInput("\n".join(problems))
    return given


def load_params_file(path: str | Path) -> dict[str, Any]:
    try:
        located = parse_yaml_file(Path(path))
    except YamlSyntaxError as exc:
        raise InvalidInput(str(exc), exc.diagnostics) from None
    if located.problems:
        raise InvalidInput("\n".join(map(str, located.problems)), list(located.problems))
    if located.data is None:
        return {}
    if not isinstance(located.data, dict):
        diag = Diagnostic(str(path), 1, 1, "a params file must be a mapping of name: value")
        raise InvalidInput(str(diag), [diag])
    return dict(located.data)


class _OverLimit(Exception):
    def __init__(self, problem: LimitProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _coerce(text: str, declared: str) -> Any:
    if declared == "string":
        return text
    if declared == "integer":
        return int_from_text(text)
    if declared == "number":
        return int_from_text(text) if looks_like_int(text) else float(text)
    if declared == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError("expected true or false")
    if declared in ("array", "object"):
        try:
            return json.loads(text, parse_constant=_refuse_constant, parse_int=int_from_text)
        except RecursionError:  # far deeper than MAX_DEPTH: where exactly does not matter
            raise _OverLimit(LimitProblem((), TOO_DEEP)) from None
    return text


def _pick(name: str, param: Param, cli_values: dict[str, str], file_values: dict[str, Any]) -> Any:
    """The value a param takes: -p (coerced), else the params file or the journal, else its default; _ABSENT if
    none. Raises ValueError when a -p text is not of the declared type, _OverLimit when it is too large."""
    if name in cli_values:
        text = cli_values[name]
        over = value_problem(text)
        if over is not None:
            raise _OverLimit(over)
        return _coerce(text, param.type)
    if name in file_values:
        return file_values[name]
    return param.default if param.has_default else _ABSENT


def _limit_message(name: str, param: Param, problem: LimitProblem) -> str:
    where = dotted((name, *problem.path))
    if len(where) > 80:
        where = f"{where[:60]}...{where[-16:]}"
    at = f" at {where}" if problem.path and not param.secret else ""
    return f"param {name!r}: {problem.message}{at}"


def _problems_of(name: str, param: Param, value: Any) -> list[str]:
    """The limits every value keeps first (the schema check could recurse or mislead past them), then the schema."""
    over = value_problem(value)
    if over is not None:
        return [_limit_message(name, param, over)]
    shown = SECRET_MASK if param.secret else _short(repr(value))
    errors = jsonschema.Draft202012Validator(param.schema).iter_errors(value)
    return [
        f"param {name!r} = {shown}: {f'fails its {e.validator} rule' if param.secret else _short(e.message)}"
        for e in errors
    ]


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}...{text[-17:]}"


def resolve(runbook: Runbook, cli_values: dict[str, str], file_values: dict[str, Any] | None = None) -> ResolvedParams:
    """Defaults, then the params file (or the journal), then -p; every problem reported together."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    file_values = file_values or {}
    for name in list(file_values) + list(cli_values):
        if name not in runbook.params:
            known = ", ".join(sorted(runbook.params)) or "none"
            problems.append(f"unknown param {name!r} (this runbook takes: {known})")
    for name, param in runbook.params.items():
        try:
            value = _pick(name, param, cli_values, file_values)
        except _OverLimit as exc:
            problems.append(_limit_message(name, param, exc.problem))
            continue
        except ValueError as exc:  # JSONDecodeError is a ValueError
            problems.append(f"param {name!r} must be {param.type}: {_short(str(exc))}")
            continue
        if value is _ABSENT:
            continue
        values[name] = value
        problems += _problems_of(name, param, value)
    missing = [n for n, p in runbook.params.items() if p.required and n not in values]
    if missing:
        problems.append("missing required params: " + ", ".join(missing) + " (give them with -p name=value)")
    if problems:
        raise InvalidInput("\n".join(problems))
    return ResolvedParams(values=values, secret_names=frozenset(runbook.secret_params))
