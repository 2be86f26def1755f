"""JSON Schema validation of runbooks and policies, with errors placed at file:line:col."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

from runner.errors import Diagnostic
from runner.language.describe import kind, short
from runner.language.yamlsource import Located, PathKey
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
        return f"unknown key {', '.join(repr(e) for e in _extra_keys(error))}", True
    if validator_name == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required key {missing!r}", False
    if validator_name == "pattern":
        if error.validator_value == DURATION_PATTERN:
            return (
                f"{short(error.instance)} does not match a duration: a whole number and ms, s, m, h or d (90s, 5m)",
                False,
            )
        return f"{short(error.instance)} does not match {error.validator_value!r}", False
    if validator_name == "format" and error.validator_value == "regex":
        return f"invalid regular expression: {regex_problem(str(error.instance))}", False
    if validator_name == "enum":
        choices: Any = error.validator_value
        allowed = ", ".join(str(v) for v in choices)
        return f"{short(error.instance)} is not one of: {allowed}", False
    if validator_name == "const":
        return f"must be {error.validator_value!r}, got {short(error.instance)}", False
    if validator_name == "type":
        schema: Any = error.schema
        if isinstance(schema, dict) and schema.get("pattern") == DURATION_PATTERN:
            hint = f" (add a unit: {error.instance}s)" if isinstance(error.instance, int) else ""
            return f"must be a duration such as 90s or 5m, got {kind(error.instance)}{hint}", False
        return f"must be {_type_name(error.validator_value)}, got {kind(error.instance)}", False
    if validator_name == "minItems" and error.validator_value == 1:
        return "needs at least one item", False
    if validator_name == "propertyNames":
        return f"invalid name: {error.message}", True
    return error.message, False


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


@dataclass(frozen=True)
class SchemaCheck:
    """What the schema says of a document: its diagnostics, and which parts of the document it accepts.

    A part is rejected when a value is wrong (with everything it contains), when it is an unknown key or a key
    that is not a valid name (that entry only); a mapping that lacks a required key is incomplete, but what it
    does hold may still be valid. Values the YAML layer already replaced (Located.spoiled) count as rejected and
    are not reported again.
    """

    diagnostics: list[Diagnostic]
    rejected: frozenset[PathKey]
    incomplete: frozenset[PathKey]


def within(path: PathKey, outer: PathKey) -> bool:
    return path[: len(outer)] == outer


def check_document(located: Located, schema_name: str) -> SchemaCheck:
    spoiled = list(located.spoiled)
    rejected: set[PathKey] = set(spoiled)
    incomplete: set[PathKey] = set()
    found: list[Diagnostic] = []
    seen: set[tuple[int, int, str]] = set()
    errors = sorted(validator(schema_name).iter_errors(located.data), key=lambda e: list(map(str, e.absolute_path)))
    for top in errors:
        if top.validator == "required":
            incomplete.add(tuple(top.absolute_path))
        else:
            rejected.update(_rejected_parts(top))
        for error in _leaf_errors(top):
            for path, diagnostic in _diagnostics(located, error):
                if not any(within(path, outer) for outer in spoiled):
                    _add(found, seen, diagnostic)
    return SchemaCheck(found, frozenset(rejected), frozenset(incomplete))


def _rejected_parts(error: jsonschema.ValidationError) -> list[PathKey]:
    path: PathKey = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        return [(*path, key) for key in _extra_keys(error)]
    if "propertyNames" in error.schema_path:
        return [(*path, str(error.instance))]
    return [path]


def _extra_keys(error: jsonschema.ValidationError) -> list[str]:
    return sorted(set(_instance_keys(error)) - set(_schema_properties(error)))


def _diagnostics(located: Located, error: jsonschema.ValidationError) -> list[tuple[PathKey, Diagnostic]]:
    """The diagnostics of one (leaf) schema error, each with the path it is about."""
    path: PathKey = tuple(error.absolute_path)
    message, at_key = _message(error)
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        # the error is about a key: point at it, and say what kind of name it is
        what = {"params": "param name"}.get(str(path[-1]) if path else "", "name")
        detail = f"must match {error.validator_value!r}" if error.validator == "pattern" else message
        text = f"invalid {what} {error.instance!r}: {detail}"
        key_path = (*path, error.instance)
        return [(key_path, located.diagnostic(key_path, text, key=True))]
    if error.validator == "additionalProperties":
        return [
            ((*path, key), located.diagnostic((*path, key), f"unknown key {key!r}", key=True))
            for key in _extra_keys(error)
        ]
    return [(path, located.diagnostic(path, message, key=at_key))]


def _add(found: list[Diagnostic], seen: set[tuple[int, int, str]], diagnostic: Diagnostic) -> None:
    marker = (diagnostic.line, diagnostic.column, diagnostic.message)
    if marker not in seen:
        seen.add(marker)
        found.append(diagnostic)
