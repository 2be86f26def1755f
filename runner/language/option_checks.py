"""A step's `with:` against its role's argument spec, the way Ansible's argument spec validation checks it.

Every nesting level is checked alike (required, unknown keys, type, choices, list elements, the sub-options of a
dict or of each dict in a list, and deeper). Validation before params are known is strict (a number where a
string is expected is fine, a string where a number is expected is not) and skips template values; once
templates are rendered it is lenient like Ansible (the string "5" is an int).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from runner.language.describe import kind
from runner.language.role_specs import Role, RoleOption, suggest
from runner.language.templates import is_template
from runner.language.value_formats import format_problem

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
    "bytes": "a size in bytes (such as 10M)",
    "bits": "a size in bits (such as 1Mb)",
    "json": "a JSON string, list or mapping",
    "jsonarg": "a JSON string, list or mapping",
}


@dataclass(frozen=True)
class OptionProblem:
    path: RelPath  # relative to the step's with: mapping
    message: str
    key: bool = False  # points at the key rather than the value


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
    unchecked: frozenset[RelPath] = frozenset()  # values already reported as unreadable: present, not checked

    def is_literal(self, at: RelPath) -> bool:
        return any(at[: len(p)] == p for p in self.literal)

    def skips(self, at: RelPath, value: Any) -> bool:
        if any(at[: len(p)] == p for p in self.unchecked):
            return True
        return is_template(value) and not self.is_literal(at)  # checked once params are known (typecheck)


def check_options(
    role: Role,
    with_: dict[str, Any],
    *,
    lenient: bool = False,
    literal: frozenset[RelPath] = frozenset(),
    show_values: bool = True,
    unchecked: frozenset[RelPath] = frozenset(),
) -> list[OptionProblem]:
    """Every problem of a step's with: against the role's options (unknown, required, type, choices).

    Template strings are skipped (they are checked once params are known), except under the paths in literal;
    values under the paths in unchecked count as given but are not checked.
    """
    mode = _Mode(lenient, literal, show_values, unchecked)
    problems: list[OptionProblem] = []
    for raw_key in with_:
        key = str(raw_key)
        if key not in role.options and not mode.skips((key,), None):
            problems.append(OptionProblem((key,), _unknown_top(role, key), key=True))
    for option in role.options.values():
        if option.name in with_:
            problems += _check_value(role, option, with_[option.name], (option.name,), mode)
        elif option.required:
            problems.append(OptionProblem((), f"role {role.name} needs option {option.name!r}"))
    return problems


def _unknown_top(role: Role, key: str) -> str:
    if key.startswith(role.prefix) and key[len(role.prefix) :] in role.options:
        hint = f"; write it without the role prefix: {key[len(role.prefix) :]!r}"
    elif not role.options:
        hint = " (the role declares no options in meta/argument_specs.yml)"
    else:
        close = role.suggest(key)
        hint = f"; did you mean {close!r}?" if close else ""
    return f"role {role.name} has no option {key!r}{hint}"


def _check_sub(
    role: Role, options: dict[str, RoleOption], value: dict[str, Any], at: RelPath, mode: _Mode
) -> list[OptionProblem]:
    problems: list[OptionProblem] = []
    for raw_key in value:
        key = str(raw_key)
        if key not in options and not mode.skips((*at, key), None):
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
    if mode.skips(at, value):
        return []
    ok, converted = convert(option.type, value, lenient=mode.lenient)
    if not ok:
        return [_type_problem(role, option.type, value, at, mode)]
    if option.type == "list" and isinstance(converted, list):
        return _check_items(role, option, converted, at, mode)
    problems: list[OptionProblem] = []
    if option.choices and _hashable_not_in(converted, option.choices):
        problems.append(OptionProblem(at, _choices_message(role, at, option, value, mode)))
    badly_formed = format_problem(role.formats, at, converted)
    if badly_formed is not None:
        problems.append(OptionProblem(at, f"option {_label(at)!r} of role {role.name}: {badly_formed}"))
    if option.options and isinstance(converted, dict):
        problems += _check_sub(role, option.options, converted, at, mode)
    return problems


def _check_items(role: Role, option: RoleOption, items: list[Any], at: RelPath, mode: _Mode) -> list[OptionProblem]:
    """Each element of a list option: its type (elements), choices, and sub-options when it is a mapping."""
    problems: list[OptionProblem] = []
    for index, item in enumerate(items):
        item_at = (*at, index)
        if mode.skips(item_at, item):
            continue
        if option.elements:
            good, item = convert(option.elements, item, lenient=mode.lenient)
            if not good:
                problems.append(_type_problem(role, option.elements, items[index], item_at, mode))
                continue
        if option.choices and _hashable_not_in(item, option.choices):
            problems.append(OptionProblem(item_at, _choices_message(role, item_at, option, item, mode)))
        if option.options and isinstance(item, dict):
            problems += _check_sub(role, option.options, item, item_at, mode)
    return problems


def _type_problem(role: Role, type_name: str, value: Any, at: RelPath, mode: _Mode) -> OptionProblem:
    expected = _TYPE_NAMES.get(type_name, type_name)
    shown = _show(value, mode.show_values)
    return OptionProblem(at, f"option {_label(at)!r} of role {role.name} expects {expected}, got {shown}")


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
    what = kind(value)
    if isinstance(value, (dict, list)) or value is None or not show_values:
        return what
    text = repr(value)
    return f"{what} {text}" if len(text) <= 40 else what


def convert(type_name: str, value: Any, *, lenient: bool) -> tuple[bool, Any]:
    """Whether value fits an argument_specs type, and the value as Ansible would pass it on."""
    converter = _CONVERTERS.get(type_name)
    return converter(value, lenient) if converter is not None else (True, value)


def _to_str(value: Any, lenient: bool) -> tuple[bool, Any]:
    if isinstance(value, str):
        return True, value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True, str(value)  # Ansible converts numbers to strings for str options
    if lenient and isinstance(value, bool):
        return True, str(value)
    return False, value


def _to_int(value: Any, lenient: bool) -> tuple[bool, Any]:
    if isinstance(value, bool):
        return False, value
    if isinstance(value, int):
        return True, value
    if lenient and isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value) and len(value) < 40:
        return True, int(value)
    if lenient and isinstance(value, float) and value.is_integer():
        return True, int(value)
    return False, value


def _to_float(value: Any, lenient: bool) -> tuple[bool, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True, float(value)
    if lenient and isinstance(value, str):
        try:
            return True, float(value)
        except ValueError:
            return False, value
    return False, value


def _to_bool(value: Any, lenient: bool) -> tuple[bool, Any]:
    if isinstance(value, bool):
        return True, value
    if lenient and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return True, value.strip().lower() in ("yes", "true", "on", "1", "y", "t", "1.0")
    if lenient and isinstance(value, (int, float)) and value in (0, 1):
        return True, bool(value)
    return False, value


def _to_list(value: Any, lenient: bool) -> tuple[bool, Any]:
    if isinstance(value, list):
        return True, value
    if lenient and isinstance(value, str):
        return True, [part.strip() for part in value.split(",")] if value else []
    if lenient and isinstance(value, (int, float)) and not isinstance(value, bool):
        return True, [str(value)]
    return False, value


def _to_dict(value: Any, lenient: bool) -> tuple[bool, Any]:
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


def _to_size(isbits: bool) -> Any:
    def check(value: Any, lenient: bool) -> tuple[bool, Any]:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return False, value
        from ansible.module_utils.common.text.formatters import human_to_bytes  # only roles with size options

        try:
            return True, human_to_bytes(value, isbits=isbits)
        except (ValueError, TypeError):
            return False, value

    return check


def _to_json(value: Any, lenient: bool) -> tuple[bool, Any]:
    return isinstance(value, (str, list, dict)), value


_CONVERTERS = {
    "str": _to_str,
    "path": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "list": _to_list,
    "dict": _to_dict,
    "bytes": _to_size(isbits=False),
    "bits": _to_size(isbits=True),
    "json": _to_json,
    "jsonarg": _to_json,
}
