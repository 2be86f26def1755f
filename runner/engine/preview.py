"""What the operator is shown before a step runs (its approval question, `runbook plan`): templates rendered with
what is known then — the params, the inventory variables of the step's hosts, the outputs recorded so far.

Rendering is sandboxed and every value is data: a param, inventory value or output is never parsed as a template.
Each `{{ expression }}` is rendered on its own; one that needs what only the run has (a fact, an output not yet
recorded, a filter only Ansible has, an inventory value that is itself a template) is shown as `<expression>`,
never as Jinja. One that reads a secret (a secret param, an inventory variable named like a password, token or
key, a vaulted value) is shown as ********. Where the step's hosts give different results, each host's is shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runner.engine.host_variables import HostVariables
from runner.engine.step_outputs import ANY_HOST
from runner.language import templates
from runner.language.describe import scalar_text
from runner.language.params import SECRET_MASK

Outputs = Mapping[str, Mapping[str, Any]]  # host -> step id -> the outputs recorded there

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
_SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|credential|api_?key|private_key", re.I)
_MAX_PLACEHOLDER = 60
_MAX_HOSTS_SHOWN = 4


class _CannotTell(Exception):
    """The template needs what only the run has."""


class _StandIn:
    """A value in the context that is not shown as it is: any use but display cannot be told now."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)  # Jinja then tries an item, which cannot be told

    def __getitem__(self, key: Any) -> Any:
        raise _CannotTell("stand-in")

    def __iter__(self) -> Iterator[Any]:
        raise _CannotTell("stand-in")

    def __len__(self) -> int:
        raise _CannotTell("stand-in")


class _Secret(_StandIn):
    def __str__(self) -> str:
        return SECRET_MASK


class _AtRunTime(_StandIn):
    """A value Ansible works out when the step runs (an inventory template)."""

    def __str__(self) -> str:
        raise _CannotTell("run time")

    def __bool__(self) -> bool:
        raise _CannotTell("run time")


def _data(value: Any, secret: bool) -> Any:
    """An inventory value as plain data for the sandbox; secrets and templates as stand-ins."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _Secret() if secret else (int(value) if isinstance(value, int) else float(value))
    if isinstance(value, str):
        if secret and value:
            return _Secret()
        return _AtRunTime() if templates.is_template(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _data(v, secret or bool(_SECRET_NAME.search(str(k)))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_data(v, secret) for v in value]
    return _Secret()  # a vaulted value (ansible's EncryptedString), or a type the runner does not know


def _finished(result: Any) -> Any:
    """The value an expression gave, as plain data (secrets masked); _CannotTell if it is not known now."""
    if isinstance(result, (jinja2.Undefined, _AtRunTime)):
        raise _CannotTell("undefined")
    if isinstance(result, _Secret):
        return SECRET_MASK
    if isinstance(result, Mapping):
        return {str(k): _finished(v) for k, v in result.items()}
    if isinstance(result, (list, tuple, Iterator)):
        return [_finished(v) for v in result]
    if result is None or isinstance(result, (str, int, float, bool)):
        return result
    raise _CannotTell(type(result).__name__)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def placeholder(expression: str) -> str:
    text = " ".join(expression.split())
    return "<" + (text if len(text) <= _MAX_PLACEHOLDER else text[: _MAX_PLACEHOLDER - 1] + "…") + ">"


@lru_cache(maxsize=2048)
def _compiled(expression: str) -> Any:
    try:
        return _ENV.compile_expression(expression, undefined_to_none=False)
    except Exception:  # a syntax error, a filter or test only Ansible has
        return None


@lru_cache(maxsize=2048)
def _names(expression: str) -> tuple[frozenset[str], frozenset[str]]:
    """The variables an expression reads, and the params it reads by name."""
    tree = templates.parse(expression, expression=True)
    if isinstance(tree, str):
        return frozenset(), frozenset()
    names = frozenset(n.name for n in tree.find_all(nodes.Name))
    params = frozenset(r.key for r in templates.references(expression, expression=True) if r.root == "params")
    return names, params


class Preview:
    """Renders templates for display with the params (secret ones masked), each host's inventory variables
    (loaded on first use) and the outputs recorded so far (read as they are when asked)."""

    def __init__(
        self,
        params: Mapping[str, Any],
        secret_params: frozenset[str] = frozenset(),
        variables: Callable[[], HostVariables] = dict,
        outputs: Outputs | None = None,
    ) -> None:
        self.params = {k: (_Secret() if k in secret_params and v not in (None, "") else v) for k, v in params.items()}
        self.secret_params = secret_params
        self._load_variables = variables
        self._variables: HostVariables | None = None
        self.outputs: Outputs = outputs if outputs is not None else {}

    def text(self, template: str, hosts: Sequence[str]) -> str:
        """The template as text, per host where the hosts differ."""
        if not templates.is_template(template):
            return template
        return _per_host({host: _as_text(self._render(template, host)) for host in hosts or [""]})

    def value(self, value: Any, hosts: Sequence[str]) -> Any:
        """A step's option value with its templates rendered (a whole `{{ expression }}` keeps its type); where
        the hosts give different values, one text naming each host's."""
        shown = {host: self._value(value, host) for host in hosts or [""]}
        values = list(shown.values())
        if all(v == values[0] for v in values):
            return values[0]
        return _per_host({host: show(v) for host, v in shown.items()})

    def _value(self, value: Any, host: str) -> Any:
        if isinstance(value, dict):
            return {k: self._value(v, host) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v, host) for v in value]
        return self._render(value, host) if templates.is_template(value) else value

    def _render(self, template: str, host: str) -> Any:
        if "{%" in template or "{#" in template:
            return self._statements(template, host)
        whole = _EXPRESSION.fullmatch(template.strip())
        if whole and "{{" not in whole.group(1):
            return self._expression(whole.group(1), host)
        parts: list[str] = []
        end = 0
        for match in _EXPRESSION.finditer(template):
            parts += [template[end : match.start()], _as_text(self._expression(match.group(1), host))]
            end = match.end()
        return "".join([*parts, template[end:]])

    def _expression(self, expression: str, host: str) -> Any:
        names, params = _names(expression)
        context = self._context(host)
        if params & self.secret_params or any(isinstance(context.get(n), _Secret) for n in names):
            return SECRET_MASK
        compiled = _compiled(expression)
        try:
            if compiled is None:
                raise _CannotTell("cannot compile")
            return _finished(compiled(**context))
        except Exception:  # _CannotTell, an undefined variable, a sandbox refusal, a type error
            return placeholder(expression)

    def _statements(self, template: str, host: str) -> str:
        """A template with {% %} blocks or comments: rendered whole, or one placeholder."""
        context = self._context(host)
        if any(isinstance(context.get(n), _Secret) for n in templates.free_names(template) or ()):
            return SECRET_MASK
        try:
            return _ENV.from_string(template).render(**context)
        except Exception:
            return placeholder("rendered when the step runs")

    def _context(self, host: str) -> dict[str, Any]:
        if self._variables is None:
            self._variables = self._load_variables()
        context = {
            name: _data(value, bool(_SECRET_NAME.search(name)))
            for name, value in self._variables.get(host, {}).items()
        }
        context.pop("omit", None)
        if host:
            context["inventory_hostname"] = host
        context["steps"] = self._steps(host)
        context["params"] = self.params
        return context

    def _steps(self, host: str) -> dict[str, Any]:
        """steps.<id>.<key> as the rendered plays read it: this host's outputs, else those of the first host (by
        name) that recorded the step."""
        steps: dict[str, Any] = {}
        for recorded in [*sorted(h for h in self.outputs if h not in (host, ANY_HOST)), ANY_HOST]:
            for step, values in self.outputs.get(recorded, {}).items():
                steps.setdefault(step, values)
        steps.update(self.outputs.get(host, {}))
        return steps


def show(value: Any) -> str:
    """A value on one line: strings as they are, anything else as JSON."""
    text = scalar_text(value)
    if text is not None:
        return text
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _per_host(shown: Mapping[str, str]) -> str:
    """One text when every host gives the same; otherwise `host: text | host, host: text`."""
    by_text: dict[str, list[str]] = {}
    for host, text in shown.items():
        by_text.setdefault(text, []).append(host)
    if len(by_text) == 1:
        return next(iter(by_text))
    parts = [f"{', '.join(hosts)}: {text}" for text, hosts in by_text.items()]
    more = len(parts) - _MAX_HOSTS_SHOWN
    return " | ".join(parts[:_MAX_HOSTS_SHOWN]) + (f" | … ({more} more)" if more > 0 else "")
