"""Roles a step can use: where they are and what options their meta/argument_specs.yml accepts.

A spec Ansible would refuse when the role starts (an option that is not a mapping, a type it does not know) is
reported where the role is used; runner.language.option_checks checks a step's `with:` against a readable spec.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner.language.value_formats import parse_formats
from runner.language.yamlsource import YamlSyntaxError, parse_yaml_file

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
SPEC_FILE = Path("meta") / "argument_specs.yml"
# every type Ansible's argument spec validation knows (ansible.module_utils.common.parameters)
OPTION_TYPES = frozenset(
    {"str", "path", "int", "float", "bool", "list", "dict", "raw", "bytes", "bits", "json", "jsonarg"}
)


@dataclass(frozen=True)
class RoleOption:
    name: str  # short name, as written in a runbook's with:
    full_name: str  # prefixed Ansible variable
    type: str = "str"
    required: bool = False
    default: Any = None
    has_default: bool = False
    choices: tuple[Any, ...] = ()
    elements: str | None = None
    no_log: bool = False
    description: str = ""
    options: dict[str, RoleOption] = field(default_factory=dict)  # sub-options of a dict / list of dicts


@dataclass(frozen=True)
class Role:
    name: str
    path: Path
    short_description: str = ""
    options: dict[str, RoleOption] = field(default_factory=dict)
    needs_facts: bool = False
    description: tuple[str, ...] = ()
    changes: str | None = None  # x_runbook_changes: what a step of this role changes, with {option} fields
    spec_problem: str | None = None  # why meta/argument_specs.yml could not be read (None when fine)
    has_spec: bool = False
    formats: dict[str, str] = field(default_factory=dict)  # option path -> format (runner.language.value_formats)

    @property
    def prefix(self) -> str:
        return f"{self.name}_"

    def suggest(self, unknown: str) -> str | None:
        return suggest(unknown, list(self.options))


MAX_SUGGEST = 200  # did-you-mean compares against at most this many names (hostile files have thousands)


def suggest(unknown: str, known: list[str]) -> str | None:
    """The closest known name, if close enough (None for long names or long lists: no quadratic blow-up)."""
    if len(known) > MAX_SUGGEST or len(unknown) > 100:
        return None
    close = difflib.get_close_matches(unknown, [k for k in known if len(k) <= 100], n=1, cutoff=0.6)
    return close[0] if close else None


def _description(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value or "")


def _paragraphs(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),) if value else ()


class SpecError(ValueError):
    pass


def _options(raw: Any, prefix: str, where: str) -> dict[str, RoleOption]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"{where}options must be a mapping")
    options: dict[str, RoleOption] = {}
    for full, spec in raw.items():
        full = str(full)
        spec = spec if spec is not None else {}
        if not isinstance(spec, dict):
            raise SpecError(f"option {where}{full} must be a mapping")
        short_name = full[len(prefix) :] if prefix and full.startswith(prefix) else full
        choices = spec.get("choices") or ()
        if not isinstance(choices, (list, tuple)):
            raise SpecError(f"choices of option {where}{full} must be a list")
        elements = spec.get("elements")
        type_name = str(spec.get("type", "str"))
        for what, name in (("type", type_name), ("elements", elements)):
            if name is not None and str(name) not in OPTION_TYPES:
                raise SpecError(f"option {where}{full} has {what} {name!r}, which Ansible does not know")
        options[short_name] = RoleOption(
            name=short_name,
            full_name=full,
            type=type_name,
            required=bool(spec.get("required", False)),
            default=spec.get("default"),
            has_default="default" in spec,
            choices=tuple(choices),
            elements=str(elements) if elements is not None else None,
            no_log=bool(spec.get("no_log", False)),
            description=_description(spec.get("description")),
            options=_options(spec.get("options"), "", f"{where}{short_name}.") if "options" in spec else {},
        )
    return options


def _attribute(attributes: dict[str, Any], name: str) -> str | None:
    """An entry-point attribute's description: where a role says runner-specific things ansible-lint accepts.

    ansible-lint's role-arg-spec schema rejects unknown keys in an entry point (x_runbook_changes), but allows
    `attributes: {runbook_changes: {description: "...", support: full}}`.
    """
    entry = attributes.get(name)
    if isinstance(entry, dict) and entry.get("description"):
        return _description(entry["description"])
    return None


def _spec_data(spec_file: Path) -> Any:
    """The spec file's data, read like a runbook (YAML 1.2 core, through libyaml: fast, and never a traceback)."""
    try:
        located = parse_yaml_file(spec_file)
    except YamlSyntaxError as exc:
        raise SpecError(f"line {exc.diagnostic.line}: {exc.diagnostic.message}") from None
    if located.problems:
        first = located.problems[0]
        raise SpecError(f"line {first.line}: {first.message}")
    return located.data or {}


@lru_cache(maxsize=256)
def _load_role(path: Path, mtime_ns: int) -> Role:
    name = path.name
    spec_file = path / SPEC_FILE
    if not spec_file.is_file():
        return Role(name=name, path=path)
    try:
        data = _spec_data(spec_file)
        if not isinstance(data, dict):
            raise SpecError("expected a mapping with argument_specs")
        specs = data.get("argument_specs") or {}
        if not isinstance(specs, dict):
            raise SpecError("argument_specs must be a mapping")
        main = specs.get("main") or {}
        if not isinstance(main, dict):
            raise SpecError("argument_specs.main must be a mapping")
        raw_attributes = main.get("attributes")
        attributes: dict[str, Any] = raw_attributes if isinstance(raw_attributes, dict) else {}
        changes = main.get("x_runbook_changes") or _attribute(attributes, "runbook_changes")
        facts = main.get("x_runbook_needs_facts") or _attribute(attributes, "runbook_needs_facts")
        formats = attributes.get("runbook_formats")
        return Role(
            name=name,
            path=path,
            short_description=_description(main.get("short_description")),
            options=_options(main.get("options"), f"{name}_", ""),
            needs_facts=bool(facts) and str(facts).lower() not in ("false", "no", "none"),
            description=_paragraphs(main.get("description")),
            changes=str(changes) if changes else None,
            has_spec=True,
            formats=parse_formats(formats.get("details") if isinstance(formats, dict) else formats),
        )
    except Exception as exc:  # a broken spec is reported where the role is used, never a traceback
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Role(name=name, path=path, spec_problem=detail, has_spec=True)


def _role_dir(name: str, base: Path) -> Path | None:
    if not ROLE_NAME.match(name):
        return None
    candidate = base / name
    try:
        return candidate if (candidate / "tasks" / "main.yml").is_file() else None
    except (OSError, ValueError):
        return None


def load_role(path: Path) -> Role:
    """The role in directory path (cached until its meta/argument_specs.yml changes)."""
    try:
        mtime = (path / SPEC_FILE).stat().st_mtime_ns
    except (OSError, ValueError):
        mtime = 0
    return _load_role(path, mtime)


def find_role(name: str, search_paths: list[Path]) -> Role | None:
    for base in search_paths:
        candidate = _role_dir(name, base)
        if candidate is not None:
            return load_role(candidate)
    return None


def available_roles(search_paths: list[Path]) -> list[str]:
    names: set[str] = set()
    for base in search_paths:
        try:
            entries = list(base.iterdir()) if base.is_dir() else []
        except OSError:
            continue
        names.update(p.name for p in entries if _role_dir(p.name, base) is not None)
    return sorted(names)
