"""The example step of a role's README: a step with the role's required options, as small deterministic YAML."""

from __future__ import annotations

import json
import re
from typing import Any

from runner.language.role_specs import Role, RoleOption


def example_step(role: Role) -> dict[str, Any]:
    """A step using the role: required options and lists of entries with required keys (placeholders in <>)."""
    step: dict[str, Any] = {"id": role.name.replace("_", "-"), "hosts": "all", "uses": role.name}
    required = {
        o.name: _placeholder(o, role.formats, o.name)
        for o in role.options.values()
        if o.required or (o.type == "list" and any(sub.required for sub in o.options.values()))
    }
    if required:
        step["with"] = required
    return step


FORMAT_PLACEHOLDERS = {"duration": "1m", "comparison": "> 0"}  # runner.language.value_formats


def _placeholder(option: RoleOption, formats: dict[str, str], path: str) -> Any:
    if path in formats:
        return FORMAT_PLACEHOLDERS[formats[path]]
    if option.choices:
        return option.choices[0]
    if option.type in ("int", "float"):
        return option.default if isinstance(option.default, (int, float)) and not option.required else 1
    if option.type == "bool":
        return False
    if option.type == "dict":
        return {o.name: _placeholder(o, formats, f"{path}.{o.name}") for o in option.options.values() if o.required}
    if option.type == "list":
        if option.options:
            return [
                {o.name: _placeholder(o, formats, f"{path}[].{o.name}") for o in option.options.values() if o.required}
            ]
        return [f"<{option.name}>"] if option.elements in (None, "str", "path", "raw") else []
    return f"<{option.name}>"


def yaml_block(value: Any, indent: int = 0) -> list[str]:
    """Small, deterministic YAML for examples (block style, JSON-quoted strings where needed)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines += yaml_block(item, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                inner = yaml_block(item, indent + 2)
                lines.append(f"{pad}- {inner[0].strip()}")
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9<>_./-]+", value) and value not in ("true", "false", "null"):
        return value
    return json.dumps(value, ensure_ascii=False)
