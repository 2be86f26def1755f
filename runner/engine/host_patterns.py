"""A step's `hosts:` as Ansible reads it when the play starts: a template is rendered with the run's params and the
inventory's groups (Ansible's own templating, the params as data that is never rendered again), so the run knows,
and leases, the hosts a templated pattern names before anything touches a host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.errors import InvalidInput
from runner.language import templates
from runner.language.model import Step

Pattern = str | list[str]


def rendered_pattern(step: Step, params: Mapping[str, Any], groups: Mapping[str, list[str]]) -> Pattern:
    """The step's hosts pattern (or list of patterns) with its template rendered; InvalidInput when it cannot be."""
    if not templates.is_template(step.hosts):
        return step.hosts
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    from ansible.utils.unsafe_proxy import wrap_var

    variables = {"params": wrap_var(dict(params)), "groups": dict(groups)}
    try:
        value = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(step.hosts))
    except Exception as exc:  # ansible raises AnsibleError subclasses with readable text
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"step {step.id}: cannot resolve hosts {step.hosts!r} with the params: {reason}") from exc
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [str(item) for item in value]
    raise InvalidInput(
        f"step {step.id}: hosts {step.hosts!r} renders to {type(value).__name__}, not a pattern or a list of them"
    )


__all__ = ["Pattern", "rendered_pattern"]
