"""Jinja templates inside runbooks: syntax, and which params and step outputs they read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes

_ENV = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


@dataclass(frozen=True)
class Reference:
    root: str  # "params" or "steps"
    key: str
    sub: str | None = None  # steps.<id>.<sub>


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def syntax_error(text: str, *, expression: bool = False) -> str | None:
    """Message for a Jinja syntax error in text (None when fine)."""
    source = "{{ " + text + " }}" if expression else text
    try:
        _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"Jinja syntax error: {exc.message}"
    except (RecursionError, MemoryError):
        return "Jinja template is too deeply nested"
    return None


def references(text: str, *, expression: bool = False) -> list[Reference]:
    """params.X / params['X'] / steps.ID.KEY references in a template (empty on syntax errors)."""
    source = "{{ " + text + " }}" if expression else text
    try:
        tree = _ENV.parse(source)
    except (jinja2.TemplateSyntaxError, RecursionError, MemoryError):
        return []
    found: list[Reference] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if len(chain) >= 2 and chain[0] in ("params", "steps"):
            found.append(Reference(chain[0], chain[1], chain[2] if len(chain) > 2 else None))
    unique: dict[Reference, None] = dict.fromkeys(found)
    return list(unique)


def _chain(node: nodes.Node) -> list[str]:
    """Name.attr.attr as a list of strings, innermost first; empty when not a plain chain."""
    parts: list[str] = []
    current: nodes.Node = node
    while True:
        if isinstance(current, nodes.Getattr):
            parts.append(current.attr)
            current = current.node
        elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
            parts.append(str(current.arg.value))
            current = current.node
        elif isinstance(current, nodes.Name):
            parts.append(current.name)
            return list(reversed(parts))
        else:
            return []
