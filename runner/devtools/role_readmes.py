"""roles/<role>/README.md: a role's options table, the keys of its nested options and an example step."""

from __future__ import annotations

from pathlib import Path

from runner.devtools.markdown import GENERATED, cell, table
from runner.devtools.option_cells import option_choices, option_default, option_description, option_type
from runner.devtools.role_example import example_step, yaml_block
from runner.language.role_specs import Role, RoleOption


def role_dirs(roles_dir: Path) -> list[Path]:
    """Every role under roles_dir with an argument spec, sorted by name."""
    if not roles_dir.is_dir():
        return []
    return sorted(p for p in roles_dir.iterdir() if (p / "meta" / "argument_specs.yml").is_file())


def role_readme(role: Role) -> str:
    """roles/<role>/README.md, from the role's meta/argument_specs.yml."""
    if role.spec_problem:
        raise ValueError(f"roles/{role.name}/meta/argument_specs.yml: {role.spec_problem}")
    return "\n".join([*_summary(role), *_options(role), *_example(role)])


def _summary(role: Role) -> list[str]:
    lines = [
        f"# {role.name}",
        "",
        GENERATED.format(sources="meta/argument_specs.yml"),
        "",
        cell(role.short_description) or f"The {role.name} role.",
        "",
    ]
    for paragraph in role.description:
        lines.append(f"- {cell(paragraph)}")
    if role.description:
        lines.append("")
    if role.changes:
        lines += [f"**What a step changes:** {cell(role.changes)}", ""]
    return lines


def _options(role: Role) -> list[str]:
    lines = [
        "## Options",
        "",
        f"In a runbook step write the short name under `with:`; the runner passes it to the role as the prefixed "
        f"variable (`{role.prefix}<name>`). Every option is checked against this table by `runbook validate`.",
        "",
    ]
    if not role.options:
        return [*lines, "This role takes no options."]
    rows = [[f"`{option.name}`", f"`{option.full_name}`", *_cells(option)] for option in role.options.values()]
    lines += table(["Option", "Variable", "Type", "Required", "Default", "Choices", "Description"], rows)
    return lines + _sub_options(role.options, "", 3)


def _sub_options(options: dict[str, RoleOption], label: str, level: int) -> list[str]:
    lines: list[str] = []
    for option in options.values():
        if not option.options:
            continue
        where = f"{label}{option.name}" + ("[]" if option.type == "list" else "")
        lines += ["", f"{'#' * level} Keys of `{where}`", ""]
        rows = [[f"`{sub.name}`", *_cells(sub)] for sub in option.options.values()]
        lines += table(["Key", "Type", "Required", "Default", "Choices", "Description"], rows)
        lines += _sub_options(option.options, where + ".", min(level + 1, 6))
    return lines


def _cells(option: RoleOption) -> list[str]:
    """Type, required, default, choices and description."""
    required = "yes" if option.required else ""
    return [
        cell(option_type(option)),
        required,
        option_default(option),
        option_choices(option),
        option_description(option),
    ]


def _example(role: Role) -> list[str]:
    return ["", "## Example step", "", "```yaml", "steps:", *yaml_block([example_step(role)], 2), "```", ""]
