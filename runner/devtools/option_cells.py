"""How one role option reads in a Markdown table: its type, default, choices and description."""

from __future__ import annotations

from runner.devtools.markdown import cell, code
from runner.language.role_specs import RoleOption


def option_type(option: RoleOption) -> str:
    return option.type + (f" of {option.elements}" if option.type == "list" and option.elements else "")


def option_default(option: RoleOption) -> str:
    """Empty for a required option, — for one without a default."""
    if option.required:
        return ""
    if not option.has_default or option.default is None:
        return "—"
    return code(option.default)


def option_choices(option: RoleOption) -> str:
    return ", ".join(code(c) for c in option.choices)


def option_description(option: RoleOption) -> str:
    text = cell(option.description)
    if option.no_log:
        text += " Secret: never logged (the step runs with `no_log`)."
    return text.strip()
