"""Operator-given param values: parsed, coerced to the declared type, checked, never turned into code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from runner.errors import Diagnostic, InvalidInput
from runner.language.model import Runbook

SECRET_MASK = "********"


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
    from runner.language.yamlsource import YamlSyntaxError, parse_yaml_file

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


def _coerce(text: str, declared: str) -> Any:
    if declared == "string":
        return text
    if declared == "integer":
        return int(text, 10)
    if declared == "number":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if declared == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError("expected true or false")
    if declared in ("array", "object"):
        value = json.loads(text)
        return value
    return text


def resolve(runbook: Runbook, cli_values: dict[str, str], file_values: dict[str, Any] | None = None) -> ResolvedParams:
    """Defaults, then the params file, then -p values; every problem reported together."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    file_values = file_values or {}
    for name in list(file_values) + list(cli_values):
        if name not in runbook.params:
            known = ", ".join(sorted(runbook.params)) or "none"
            problems.append(f"unknown param {name!r} (this runbook takes: {known})")
    for name, param in runbook.params.items():
        if name in cli_values:
            try:
                values[name] = _coerce(cli_values[name], param.type)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                problems.append(f"param {name!r} must be {param.type}: {exc}")
                continue
        elif name in file_values:
            values[name] = file_values[name]
        elif param.has_default:
            values[name] = param.default
        else:
            continue
        shown = SECRET_MASK if param.secret else repr(values[name])
        for error in jsonschema.Draft202012Validator(param.schema).iter_errors(values[name]):
            detail = error.message if not param.secret else f"fails its {error.validator} rule"
            problems.append(f"param {name!r} = {shown}: {detail}")
    missing = [n for n, p in runbook.params.items() if p.required and n not in values]
    if missing:
        problems.append("missing required params: " + ", ".join(missing) + " (give them with -p name=value)")
    if problems:
        raise InvalidInput("\n".join(problems))
    return ResolvedParams(values=values, secret_names=frozenset(runbook.secret_params))
