"""Checks of param definitions the schema cannot make: item schemas, and defaults against their own rules."""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from runner.language.describe import short
from runner.language.parts import Parts, Problem
from runner.language.yamlsource import PathKey

PARAMS: PathKey = ("spec", "params")
PARAM_KEYWORDS = ("type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "items")

# keywords a JSON Schema (draft 2020-12) may hold besides its assertions: anything else is a typo jsonschema ignores
_ANNOTATIONS = {"$schema", "$id", "$anchor", "$dynamicAnchor", "$comment", "$defs", "$vocabulary", "title"}
_ANNOTATIONS |= {"description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
_ANNOTATIONS |= {"contentMediaType", "contentEncoding", "contentSchema"}
_KEYWORDS = frozenset(jsonschema.Draft202012Validator.VALIDATORS) | _ANNOTATIONS
_ONE_SCHEMA = ("items", "contains", "not", "if", "then", "else", "propertyNames", "additionalProperties")
_ONE_SCHEMA_UNEVALUATED = ("unevaluatedItems", "unevaluatedProperties")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")


def param_schema(definition: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema a param's value must satisfy (its type defaults to string)."""
    schema = {k: definition[k] for k in PARAM_KEYWORDS if k in definition}
    schema.setdefault("type", "string")
    return schema


def declared_params(parts: Parts) -> list[str]:
    """Every param name the runbook declares (also those whose definition is wrong: that is reported already)."""
    params = parts.get(PARAMS)
    return [str(name) for name in params] if isinstance(params, dict) else []


def check_params(parts: Parts) -> list[Problem]:
    problems: list[Problem] = []
    for path, _name, definition in parts.entries(PARAMS):
        items_path = (*path, "items")
        item_problems = _item_schema_problems(parts.get(items_path), items_path) if parts.has(items_path) else []
        problems += item_problems
        if parts.whole(path) and definition.get("default") is not None and not item_problems:
            problems += _default_problems(definition, path)
    return problems


def _item_schema_problems(items: Any, path: PathKey) -> list[Problem]:
    if items is None:
        return []  # rejected by the schema
    try:
        jsonschema.Draft202012Validator.check_schema(items)
    except jsonschema.SchemaError as exc:
        return [Problem(path, f"invalid item schema: {_first_line(exc.message)}")]
    except Exception:
        return [Problem(path, "invalid item schema")]
    return _unknown_keywords(items, path)


def _unknown_keywords(schema: Any, path: PathKey) -> list[Problem]:
    """Keys of an item schema (and of the schemas inside it) that are no JSON Schema keyword."""
    if not isinstance(schema, dict):
        return []
    problems = [
        Problem((*path, key), f"unknown key {key!r} in the item schema", key=True)
        for key in schema
        if key not in _KEYWORDS
    ]
    for key in (*_ONE_SCHEMA, *_ONE_SCHEMA_UNEVALUATED):
        if key in schema:
            problems += _unknown_keywords(schema[key], (*path, key))
    for key in _SCHEMA_MAPS:
        for name, sub in schema.get(key, {}).items():
            problems += _unknown_keywords(sub, (*path, key, name))
    for key in _SCHEMA_LISTS:
        for index, sub in enumerate(schema.get(key, ())):
            problems += _unknown_keywords(sub, (*path, key, index))
    return problems


def _default_problems(definition: dict[str, Any], path: PathKey) -> list[Problem]:
    default = definition["default"]
    secret = definition.get("secret", False)
    try:
        validator = jsonschema.Draft202012Validator(param_schema(definition))
        shown = "(secret)" if secret else short(default, 60)
        return [
            Problem((*path, "default"), f"default {shown} breaks the param's own rule: {_rule_message(error)}")
            for error in validator.iter_errors(default)
        ]
    except (RecursionError, TypeError, ValueError, re.error, jsonschema.SchemaError) as exc:
        return [Problem(path, f"invalid param definition: {_first_line(str(exc))}")]


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


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
