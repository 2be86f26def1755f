"""Deterministic YAML output for rendered files; operator values tagged !unsafe so Ansible never templates them."""

from __future__ import annotations

from typing import Any

import yaml


class Unsafe(str):
    """A string Ansible must take literally (emitted as !unsafe)."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(
            flow, False
        )  # lists indented under their key, as ansible-lint's yamllint wants


def _represent_unsafe(dumper: yaml.SafeDumper, value: Unsafe) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", str(value), style="'")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(Unsafe, _represent_unsafe)
_Dumper.add_representer(str, _represent_str)


def mark_unsafe(value: Any) -> Any:
    """Every string inside value becomes Unsafe (keys too are plain strings; they are never templated)."""
    if isinstance(value, str):
        # an empty string holds no template; ansible-core 2.19 reads `!unsafe ''` as None, so leave it plain
        return Unsafe(value) if value else value
    if isinstance(value, dict):
        return {str(k): mark_unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mark_unsafe(v) for v in value]
    return value


def dump(data: Any, header: str = "") -> str:
    body = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    )
    return ("---\n" if not header else header + "---\n") + body
