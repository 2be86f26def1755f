"""Roles a step can use: where they are and what options their meta/argument_specs.yml accepts."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


@dataclass(frozen=True)
class RoleOption:
    name: str  # short name, as written in a runbook's with:
    full_name: str  # prefixed Ansible variable
    type: str = "str"
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    elements: str | None = None
    no_log: bool = False
    description: str = ""


@dataclass(frozen=True)
class Role:
    name: str
    path: Path
    short_description: str = ""
    options: dict[str, RoleOption] = field(default_factory=dict)
    needs_facts: bool = False

    @property
    def prefix(self) -> str:
        return f"{self.name}_"

    def suggest(self, unknown: str) -> str | None:
        close = difflib.get_close_matches(unknown, list(self.options), n=1, cutoff=0.6)
        return close[0] if close else None


def _description(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value or "")


@lru_cache(maxsize=256)
def _load_role(path: Path) -> Role:
    name = path.name
    spec_file = path / "meta" / "argument_specs.yml"
    options: dict[str, RoleOption] = {}
    short = ""
    needs_facts = False
    if spec_file.is_file():
        data = YAML(typ="safe").load(spec_file.read_text(encoding="utf-8")) or {}
        main = (data.get("argument_specs") or {}).get("main") or {}
        short = _description(main.get("short_description"))
        needs_facts = bool(main.get("x_runbook_needs_facts", False))
        for full, spec in (main.get("options") or {}).items():
            spec = spec or {}
            short_name = full[len(name) + 1 :] if full.startswith(f"{name}_") else full
            options[short_name] = RoleOption(
                name=short_name,
                full_name=full,
                type=str(spec.get("type", "str")),
                required=bool(spec.get("required", False)),
                default=spec.get("default"),
                choices=tuple(spec.get("choices") or ()),
                elements=spec.get("elements"),
                no_log=bool(spec.get("no_log", False)),
                description=_description(spec.get("description")),
            )
    return Role(name=name, path=path, short_description=short, options=options, needs_facts=needs_facts)


def find_role(name: str, search_paths: list[Path]) -> Role | None:
    for base in search_paths:
        candidate = base / name
        if (candidate / "tasks" / "main.yml").is_file():
            return _load_role(candidate)
    return None


def available_roles(search_paths: list[Path]) -> list[str]:
    names: set[str] = set()
    for base in search_paths:
        if base.is_dir():
            names.update(p.name for p in base.iterdir() if (p / "tasks" / "main.yml").is_file())
    return sorted(names)


_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "raw": (object,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def type_error(option: RoleOption, value: Any) -> str | None:
    """Why value does not fit the option (None when it fits). Template strings are checked later."""
    if is_template(value):
        return None
    expected = _TYPE_CHECKS.get(option.type)
    if expected is None:
        return None
    if option.type == "int" and isinstance(value, bool):
        return f"expects an integer, got {value!r}"
    if option.type in ("str", "path") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None  # Ansible converts numbers to strings for str options
    if not isinstance(value, expected):
        return f"expects {_TYPE_NAMES.get(option.type, option.type)}, got {_kind(value)}"
    if option.choices and value not in option.choices:
        allowed = ", ".join(str(c) for c in option.choices)
        return f"must be one of: {allowed} (got {value!r})"
    return None


_TYPE_NAMES = {
    "str": "a string",
    "path": "a path string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing (null)"
    return type(value).__name__


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)
