"""Roles a step can use: where they are and what options their meta/argument_specs.yml accepts.

check_options() validates a step's `with:` against the spec the way Ansible's argument spec validation does
(required, unknown, type, choices, list elements, sub-options of dicts and lists of dicts). Validation before
params are known is strict (a number where a string is expected is fine, a string where a number is expected is
not) and skips template values; once templates are rendered it is lenient like Ansible (the string "5" is an int).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
SPEC_FILE = Path("meta") / "argument_specs.yml"


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
        options[short_name] = RoleOption(
            name=short_name,
            full_name=full,
            type=str(spec.get("type", "str")),
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


@lru_cache(maxsize=256)
def _load_role(path: Path, mtime_ns: int) -> Role:
    name = path.name
    spec_file = path / SPEC_FILE
    if not spec_file.is_file():
        return Role(name=name, path=path)
    try:
        data = YAML(typ="safe").load(spec_file.read_text(encoding="utf-8")) or {}
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
        return Role(
            name=name,
            path=path,
            short_description=_description(main.get("short_description")),
            options=_options(main.get("options"), f"{name}_", ""),
            needs_facts=bool(facts) and str(facts).lower() not in ("false", "no", "none"),
            description=_paragraphs(main.get("description")),
            changes=str(changes) if changes else None,
            has_spec=True,
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


# --- checking values against options -------------------------------------------------------------------------

RelPath = tuple[str | int, ...]

_BOOL_WORDS = {"yes", "no", "true", "false", "on", "off", "1", "0", "y", "n", "t", "f", "1.0", "0.0"}

_TYPE_NAMES = {
    "str": "a string",
    "path": "a path string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
}


@dataclass(frozen=True)
class OptionProblem:
    path: RelPath  # relative to the step's with: mapping
    message: str
    key: bool = False  # points at the key rather than the value


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _label(path: RelPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class _Mode:
    lenient: bool = False  # Ansible's conversions ("5" is an int): for values rendered from templates
    literal: frozenset[RelPath] = frozenset()  # values that are data even when they look like templates
    show_values: bool = True  # False when a value may hold a secret

    def is_literal(self, at: RelPath) -> bool:
        return any(at[: len(p)] == p for p in self.literal)


def check_options(
    role: Role,
    with_: dict[str, Any],
    *,
    lenient: bool = False,
    literal: frozenset[RelPath] = frozenset(),
    show_values: bool = True,
) -> list[OptionProblem]:
    """Every problem of a step's with: against the role's options (unknown, required, type, choices).

    Template strings are skipped (they are checked once params are known), except under the paths in literal.
    """
    mode = _Mode(lenient, literal, show_values)
    problems: list[OptionProblem] = []
    for raw_key in with_:
        key = str(raw_key)
        if key not in role.options:
            if key.startswith(role.prefix) and key[len(role.prefix) :] in role.options:
                hint = f"; write it without the role prefix: {key[len(role.prefix) :]!r}"
            elif not role.options:
                hint = " (the role declares no options in meta/argument_specs.yml)"
            else:
                close = role.suggest(key)
                hint = f"; did you mean {close!r}?" if close else ""
            problems.append(OptionProblem((key,), f"role {role.name} has no option {key!r}{hint}", key=True))
    for option in role.options.values():
        if option.name in with_:
            problems += _check_value(role, option, with_[option.name], (option.name,), mode)
        elif option.required:
            problems.append(OptionProblem((), f"role {role.name} needs option {option.name!r}"))
    return problems


def _check_sub(
    role: Role, options: dict[str, RoleOption], value: dict[str, Any], at: RelPath, mode: _Mode
) -> list[OptionProblem]:
    problems: list[OptionProblem] = []
    for key in value:
        key = str(key)
        if key not in options:
            close = suggest(key, list(options))
            hint = f"; did you mean {close!r}?" if close else f" (it takes: {', '.join(options)})"
            problems.append(
                OptionProblem((*at, key), f"role {role.name} has no option {_label((*at, key))!r}{hint}", key=True)
            )
    for option in options.values():
        if option.name in value:
            problems += _check_value(role, option, value[option.name], (*at, option.name), mode)
        elif option.required:
            problems.append(OptionProblem(at, f"role {role.name} needs option {_label((*at, option.name))!r}"))
    return problems


def _check_value(role: Role, option: RoleOption, value: Any, at: RelPath, mode: _Mode) -> list[OptionProblem]:
    if is_template(value) and not mode.is_literal(at):
        return []  # checked once params are known (runner.language.typecheck)
    label = _label(at)
    ok, converted = convert(option.type, value, lenient=mode.lenient)
    if not ok:
        expected = _TYPE_NAMES.get(option.type, option.type)
        shown = _show(value, mode.show_values)
        return [OptionProblem(at, f"option {label!r} of role {role.name} expects {expected}, got {shown}")]
    problems: list[OptionProblem] = []
    if option.type == "list" and isinstance(converted, list):
        for index, item in enumerate(converted):
            item_at = (*at, index)
            if is_template(item) and not mode.is_literal(item_at):
                continue
            if option.elements:
                good, item_value = convert(option.elements, item, lenient=mode.lenient)
                if not good:
                    expected = _TYPE_NAMES.get(option.elements, option.elements)
                    shown = _show(item, mode.show_values)
                    problems.append(
                        OptionProblem(
                            item_at, f"option {_label(item_at)!r} of role {role.name} expects {expected}, got {shown}"
                        )
                    )
                    continue
                item = item_value
            if option.choices and _hashable_not_in(item, option.choices):
                problems.append(OptionProblem(item_at, _choices_message(role, item_at, option, item, mode)))
            if option.options and isinstance(item, dict):
                problems += _check_sub(role, option.options, item, item_at, mode)
        return problems
    if option.choices and _hashable_not_in(converted, option.choices):
        problems.append(OptionProblem(at, _choices_message(role, at, option, value, mode)))
    if option.options and isinstance(converted, dict):
        problems += _check_sub(role, option.options, converted, at, mode)
    return problems


def _hashable_not_in(value: Any, choices: tuple[Any, ...]) -> bool:
    try:
        return value not in choices
    except TypeError:
        return True


def _choices_message(role: Role, at: RelPath, option: RoleOption, value: Any, mode: _Mode) -> str:
    allowed = ", ".join(str(c) for c in option.choices)
    return f"option {_label(at)!r} of role {role.name} must be one of: {allowed} (got {_show(value, mode.show_values)})"


def _show(value: Any, show_values: bool = True) -> str:
    """A value for a message: its kind, and the value itself when short (and not possibly secret)."""
    kind = _kind(value)
    if isinstance(value, (dict, list)) or value is None or not show_values:
        return kind
    text = repr(value)
    return f"{kind} {text}" if len(text) <= 40 else kind


def convert(type_name: str, value: Any, *, lenient: bool) -> tuple[bool, Any]:
    """Whether value fits an argument_specs type, and the value as Ansible would pass it on."""
    if type_name == "raw" or type_name not in _TYPE_NAMES:
        return True, value
    if type_name in ("str", "path"):
        if isinstance(value, str):
            return True, value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)  # Ansible converts numbers to strings for str options
        if lenient and isinstance(value, bool):
            return True, str(value)
        return False, value
    if type_name == "int":
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if lenient and isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value) and len(value) < 40:
            return True, int(value)
        if lenient and isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, value
    if type_name == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if lenient and isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if type_name == "bool":
        if isinstance(value, bool):
            return True, value
        if lenient and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return True, value.strip().lower() in ("yes", "true", "on", "1", "y", "t", "1.0")
        if lenient and isinstance(value, (int, float)) and value in (0, 1):
            return True, bool(value)
        return False, value
    if type_name == "list":
        if isinstance(value, list):
            return True, value
        if lenient and isinstance(value, str):
            return True, [part.strip() for part in value.split(",")] if value else []
        if lenient and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, [str(value)]
        return False, value
    if type_name == "dict":
        if isinstance(value, dict):
            return True, value
        if lenient and isinstance(value, str):
            if value.strip().startswith("{"):
                try:
                    loaded = json.loads(value)
                except ValueError:
                    return False, value
                return isinstance(loaded, dict), loaded
            return "=" in value, value
        return False, value
    return True, value


def type_error(option: RoleOption, value: Any) -> str | None:
    """Why value does not fit the option (None when it fits). Template strings are checked later."""
    for problem in _check_value(Role(name="role", path=Path()), option, value, (option.name,), _Mode()):
        return problem.message
    return None


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
