"""A JSON Schema object's properties as a Markdown table: key, type, required, default, rules, description."""

from __future__ import annotations

from typing import Any

from runner.devtools.markdown import cell, code, table

_TYPE_NAMES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "object": "mapping"}
_RULE_LABELS = (
    ("pattern", "matches"),
    ("minimum", "≥"),
    ("maximum", "≤"),
    ("minLength", "length ≥"),
    ("minItems", "items ≥"),
)


def properties_table(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """One row per property (properties that are just `true` are left out); defs resolve `$ref`s."""
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        if prop is True:
            continue
        resolved = _resolve(prop, defs)
        description = prop.get("description") or resolved.get("description", "")
        default = prop.get("default", resolved.get("default"))
        rows.append(
            [
                f"`{name}`",
                cell(schema_type(prop)),
                "yes" if name in required else "",
                code(default) if default is not None else "",
                cell(_rules(resolved)),
                cell(description),
            ]
        )
    return table(["Key", "Type", "Required", "Default", "Rules", "Description"], rows)


def branch(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The `then` or `else` branch of a conditional schema, without its `true` placeholders."""
    chosen = dict(schema.get(name, {}))
    properties = {k: v for k, v in chosen.get("properties", {}).items() if v is not True}
    return {**chosen, "properties": properties}


def schema_type(schema: Any) -> str:
    """What a value of this schema is, in words (`list of string`, `one of "a", "b"`, a `$defs` name)."""
    if not isinstance(schema, dict):
        return "any"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return f"{code(schema['const'])} (fixed)"
    if "enum" in schema:
        return "one of " + ", ".join(code(v) for v in schema["enum"])
    if "oneOf" in schema or "anyOf" in schema:
        branches: list[Any] = schema.get("oneOf") or schema.get("anyOf") or []
        return " or ".join(schema_type(s) for s in branches)
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return f"list of {schema_type(items)}" if items else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"mapping of name → {schema_type(schema['additionalProperties'])}"
    if isinstance(kind, list):
        return " or ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kind)
    return _TYPE_NAMES.get(str(kind), "any") if kind else "any"


def _rules(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    parts = []
    for keyword, label in _RULE_LABELS:
        if keyword in schema:
            value = schema[keyword]
            parts.append(f"{label} {code(value) if keyword == 'pattern' else value}")
    if schema.get("uniqueItems"):
        parts.append("no repeats")
    for one in schema.get("oneOf", []):
        inner = _rules(one)
        if inner:
            parts.append(inner)
    if isinstance(schema.get("items"), dict) and "enum" in schema["items"]:
        parts.append("each one of " + ", ".join(code(v) for v in schema["items"]["enum"]))
    return "; ".join(parts)


def _resolve(schema: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, dict) and "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema if isinstance(schema, dict) else {}
