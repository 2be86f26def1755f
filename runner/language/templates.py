"""Jinja templates inside runbooks: syntax, and which params and step outputs they read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import jinja2
from jinja2 import meta, nodes

T = TypeVar("T")

_ENV = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


@dataclass(frozen=True)
class Reference:
    root: str  # "params" or "steps"
    key: str
    sub: str | None = None  # steps.<id>.<sub>


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _source(text: str, expression: bool) -> str:
    return "{{ " + text + " }}" if expression else text


def parse(text: str, *, expression: bool = False) -> nodes.Template | str:
    """The template's syntax tree, or a message saying why it cannot be parsed (never raises; cached)."""
    if len(text) > 4096:
        return _parse(text, expression)
    return _parse_cached(text, expression)


@lru_cache(maxsize=4096)
def _parse_cached(text: str, expression: bool) -> nodes.Template | str:
    return _parse(text, expression)


def _parse(text: str, expression: bool) -> nodes.Template | str:
    try:
        return _ENV.parse(_source(text, expression))
    except jinja2.TemplateSyntaxError as exc:
        return f"Jinja syntax error: {exc.message}"
    except (RecursionError, MemoryError):
        return "Jinja template is too deeply nested"
    except Exception as exc:  # jinja2 on hostile input: report, never a traceback
        return f"Jinja template cannot be parsed ({type(exc).__name__})"


def syntax_error(text: str, *, expression: bool = False) -> str | None:
    """Message for a Jinja syntax error in text (None when fine)."""
    if expression and ("{{" in text or "{%" in text):
        stripped = text.strip()
        if stripped.startswith("{{") and stripped.endswith("}}"):
            return "a condition is already a Jinja expression: write it without {{ }}"
    tree = parse(text, expression=expression)
    return tree if isinstance(tree, str) else None


def references(text: str, *, expression: bool = False) -> list[Reference]:
    """params.X / params['X'] / steps.ID.KEY references in a template (empty on syntax errors)."""
    return list(_found_in(text, expression, _references))


@lru_cache(maxsize=8192)
def _found_in(text: str, expression: bool, find: Callable[[nodes.Template], Iterable[T]]) -> tuple[T, ...]:
    """What find finds in the template's tree, each once, in order; empty when it cannot be parsed or is too deep."""
    tree = parse(text, expression=expression)
    if isinstance(tree, str):
        return ()
    try:
        return tuple(dict.fromkeys(find(tree)))
    except RecursionError:
        return ()


def _references(tree: nodes.Template) -> list[Reference]:
    found: list[Reference] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if len(chain) >= 2 and chain[0] in ("params", "steps"):
            found.append(Reference(chain[0], chain[1], chain[2] if len(chain) > 2 else None))
    return found


@dataclass(frozen=True)
class PluginUse:
    kind: str  # "filter" or "test"
    name: str


# filters that take the name of another filter or test as a constant argument: (filter, argument index, kind)
_NAMES_AS_ARGUMENTS = {"map": (0, "filter"), "select": (0, "test"), "reject": (0, "test")}
_NAMES_AS_ARGUMENTS |= {"selectattr": (1, "test"), "rejectattr": (1, "test")}


def plugin_uses(text: str, *, expression: bool = False) -> list[PluginUse]:
    """Every filter and test a template names (`x | f`, `x is t`, `map('f')`, `select('t')`); empty on errors."""
    return list(_found_in(text, expression, _plugin_uses))


def _plugin_uses(tree: nodes.Template) -> list[PluginUse]:
    found: list[PluginUse] = []
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        found.append(PluginUse("filter" if isinstance(node, nodes.Filter) else "test", node.name))
        if isinstance(node, nodes.Filter) and node.name in _NAMES_AS_ARGUMENTS:
            index, kind = _NAMES_AS_ARGUMENTS[node.name]
            argument = node.args[index] if len(node.args) > index else None
            if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
                found.append(PluginUse(kind, argument.value))
    return found


def free_names(text: str, *, expression: bool = False) -> set[str] | None:
    """Variables a template reads from its context (None when it cannot be parsed)."""
    tree = parse(text, expression=expression)
    if isinstance(tree, str):
        return None
    try:
        return set(meta.find_undeclared_variables(tree))
    except Exception:  # e.g. a filter only Ansible has: the compiler refuses it
        return None


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
