"""JSON Schema validation of runbooks and policies, with errors placed at file:line:col."""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

from runner.errors import Diagnostic
from runner.language.yamlsource import Located
from runner.paths import SCHEMAS_DIR


@lru_cache(maxsize=8)
def load_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))
    return data


DURATION_PATTERN = "^[0-9]+(ms|s|m|h|d)$"
_REGEX_ERRORS = (re.error, OverflowError, RecursionError, ValueError, TypeError, MemoryError)


def regex_problem(pattern: str) -> str | None:
    """Why pattern is not a usable regular expression (None when it is)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except _REGEX_ERRORS as exc:
        return str(exc) or type(exc).__name__
    return None


def _format_checker() -> FormatChecker:
    checker = FormatChecker()

    @checker.checks("regex")
    def _is_regex(instance: object) -> bool:
        # jsonschema's own check lets OverflowError/RecursionError escape on hostile patterns
        return not isinstance(instance, str) or regex_problem(instance) is None

    return checker


@lru_cache(maxsize=8)
def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    return Draft202012Validator(schema, format_checker=_format_checker())


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For oneOf/anyOf/if-then, report the most specific sub-errors rather than 'is not valid under any'."""
    if error.context:
        context = list(error.context)
        # a branch whose type does not even match says least: prefer what the matching branch objects to
        specific = [e for e in context if e.validator != "type"]
        best = jsonschema.exceptions.best_match(specific or context)
        return _leaf_errors(best) if best is not None else [error]
    return [error]


def _message(error: jsonschema.ValidationError) -> tuple[str, bool]:
    """Human message and whether it points at a key (rather than a value)."""
    validator_name = error.validator
    if validator_name == "additionalProperties":
        extra = sorted(set(_instance_keys(error)) - set(_schema_properties(error)))
        return f"unknown key {', '.join(repr(e) for e in extra)}", True
    if validator_name == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required key {missing!r}", False
    if validator_name == "pattern":
        if error.validator_value == DURATION_PATTERN:
            return (
                f"{_short(error.instance)} does not match a duration: a whole number and ms, s, m, h or d (90s, 5m)",
                False,
            )
        return f"{_short(error.instance)} does not match {error.validator_value!r}", False
    if validator_name == "format" and error.validator_value == "regex":
        return f"invalid regular expression: {regex_problem(str(error.instance))}", False
    if validator_name == "enum":
        choices: Any = error.validator_value
        allowed = ", ".join(str(v) for v in choices)
        return f"{_short(error.instance)} is not one of: {allowed}", False
    if validator_name == "const":
        return f"must be {error.validator_value!r}, got {_short(error.instance)}", False
    if validator_name == "type":
        schema: Any = error.schema
        if isinstance(schema, dict) and schema.get("pattern") == DURATION_PATTERN:
            hint = f" (add a unit: {error.instance}s)" if isinstance(error.instance, int) else ""
            return f"must be a duration such as 90s or 5m, got {_kind(error.instance)}{hint}", False
        return f"must be {_type_name(error.validator_value)}, got {_kind(error.instance)}", False
    if validator_name == "minItems" and error.validator_value == 1:
        return "needs at least one item", False
    if validator_name == "propertyNames":
        return f"invalid name: {error.message}", True
    return error.message, False


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _instance_keys(error: jsonschema.ValidationError) -> list[str]:
    instance: Any = error.instance
    return [str(k) for k in instance] if isinstance(instance, dict) else []


def _schema_properties(error: jsonschema.ValidationError) -> list[str]:
    schema: Any = error.schema
    return list(schema.get("properties", {})) if isinstance(schema, dict) else []


def _type_name(value: Any) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "null",
    }
    if isinstance(value, list):
        return " or ".join(names.get(str(v), str(v)) for v in value)
    return names.get(str(value), str(value))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return "a string"


def schema_diagnostics(located: Located, schema_name: str) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    seen: set[tuple[int, int, str]] = set()
    errors = sorted(validator(schema_name).iter_errors(located.data), key=lambda e: list(map(str, e.absolute_path)))
    for top in errors:
        for error in _leaf_errors(top):
            path: tuple[str | int, ...] = tuple(error.absolute_path)
            message, at_key = _message(error)
            if "propertyNames" in error.schema_path and isinstance(error.instance, str):
                # the error is about a key: point at it, and say what kind of name it is
                what = {"params": "param name"}.get(str(path[-1]) if path else "", "name")
                detail = f"must match {error.validator_value!r}" if error.validator == "pattern" else message
                text = f"invalid {what} {error.instance!r}: {detail}"
                _add(found, seen, located.diagnostic((*path, error.instance), text, key=True))
                continue
            if error.validator == "additionalProperties":
                extra = sorted(set(_instance_keys(error)) - set(_schema_properties(error)))
                for key in extra:
                    diagnostic = located.diagnostic((*path, key), f"unknown key {key!r}", key=True)
                    _add(found, seen, diagnostic)
                continue
            _add(found, seen, located.diagnostic(path, message, key=at_key))
    return found


def _add(found: list[Diagnostic], seen: set[tuple[int, int, str]], diagnostic: Diagnostic) -> None:
    marker = (diagnostic.line, diagnostic.column, diagnostic.message)
    if marker not in seen:
        seen.add(marker)
        found.append(diagnostic)
