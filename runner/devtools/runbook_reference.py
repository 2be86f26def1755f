"""docs/runbook-reference.md: the runbook format section by section from the schema, then every role in brief."""

from __future__ import annotations

from typing import Any

from runner.devtools import reference_prose
from runner.devtools.markdown import GENERATED, cell, code, table
from runner.devtools.option_cells import option_choices, option_default, option_description, option_type
from runner.devtools.schema_tables import branch, properties_table
from runner.language.role_specs import Role


def reference(schema: dict[str, Any], roles: list[Role]) -> str:
    """docs/runbook-reference.md, from the runbook schema and the roles."""
    lines = [*_introduction(), *_format(schema), *_prose(), *_roles(roles)]
    return "\n".join(lines) + "\n"


def _introduction() -> list[str]:
    return [
        "# Runbook reference (apiVersion runbook/v1)",
        "",
        GENERATED.format(sources="`schemas/runbook.schema.json` and `roles/*/meta/argument_specs.yml`"),
        "",
        reference_prose.INTRO,
        "",
        "```yaml",
        reference_prose.EXAMPLE,
        "```",
        "",
    ]


def _format(schema: dict[str, Any]) -> list[str]:
    """Every part of a runbook, in the order it is written, with its keys' table."""
    defs: dict[str, Any] = schema.get("$defs", {})
    metadata, spec = schema["properties"]["metadata"], schema["properties"]["spec"]
    notification = defs["notification"]
    param_names = code(spec["properties"]["params"].get("propertyNames", {}).get("pattern", ""))
    duration = defs["duration"]
    return [
        *["## Top level", "", *properties_table(schema, defs), ""],
        *_section("`metadata`", metadata, defs),
        *_section("`spec`", spec, defs),
        *_section(
            "Params: `spec.params.<name>`",
            defs["param"],
            defs,
            lead=f"Param names match {param_names}. A param without `default` is required. Operators give values "
            "with `-p name=value` (converted to the declared type) or `--params-file`.",
        ),
        *_section("Steps: `spec.steps[]` and `spec.on_failure[]`", defs["step"], defs),
        *_section("Notifications: `spec.notify[]`", notification, defs),
        "With `kind: webhook`:",
        "",
        *properties_table(branch(notification, "then"), defs),
        "",
        "With `kind: email`:",
        "",
        *properties_table(branch(notification, "else"), defs),
        "",
        "## Durations",
        "",
        cell(duration.get("description", "")) + " Pattern: " + code(duration.get("pattern", "")) + ".",
        "",
    ]


def _section(title: str, schema: dict[str, Any], defs: dict[str, Any], lead: str | None = None) -> list[str]:
    """A heading, a lead paragraph (by default the schema's description) and the table of the schema's keys."""
    paragraph = cell(schema.get("description", "")) if lead is None else lead
    return [f"## {title}", "", paragraph, "", *properties_table(schema, defs), ""]


def _prose() -> list[str]:
    return [
        "## Templates",
        "",
        reference_prose.TEMPLATES,
        "",
        "## What `runbook validate` checks",
        "",
        reference_prose.CHECKS,
        "",
    ]


def _roles(roles: list[Role]) -> list[str]:
    """A table of every role, then each role's options in brief (the full table is in its README)."""
    lines = [
        "## Roles",
        "",
        "A step's `uses:` names a role; its `with:` takes the role's options by their short name. Each role's "
        "README (generated from its `meta/argument_specs.yml`) has the full table and an example step.",
        "",
    ]
    rows = [
        [
            f"[`{role.name}`](../roles/{role.name}/README.md)",
            cell(role.short_description),
            ", ".join(f"`{o.name}`" for o in role.options.values() if o.required) or "—",
        ]
        for role in roles
    ]
    lines += table(["Role", "What it does", "Required options"], rows)
    for role in roles:
        lines += _role_in_brief(role)
    return lines


def _role_in_brief(role: Role) -> list[str]:
    lines = ["", f"### `{role.name}`", "", cell(role.short_description), ""]
    if role.changes:
        lines += [f"What a step changes: {cell(role.changes)}", ""]
    if not role.options:
        return [*lines, "No options."]
    rows = [
        [
            f"`{o.name}`",
            cell(option_type(o)),
            "required" if o.required else option_default(o),
            option_description(o) + (f" One of {option_choices(o)}." if o.choices else ""),
        ]
        for o in role.options.values()
    ]
    return lines + table(["Option", "Type", "Default", "Description"], rows)
