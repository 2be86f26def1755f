"""Resolve inventory patterns to host names with ansible-core's own inventory code (no subprocess)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runner.engine.host_patterns import Pattern, rendered_pattern
from runner.errors import InvalidInput
from runner.language.model import Step

T = TypeVar("T")


@dataclass(frozen=True)
class StepHosts:
    """The hosts each step's `hosts:` pattern matches in the inventory (under --limit), resolved once per run."""

    by_pattern: dict[str, list[str]]

    def of(self, steps: Iterable[Step]) -> list[str]:
        """Every host some of these steps run on, by name."""
        return sorted({host for step in steps for host in self.by_pattern.get(step.hosts, [])})


def step_hosts(
    inventory: Path, steps: Iterable[Step], limit: str | None = None, params: Mapping[str, Any] | None = None
) -> StepHosts:
    """params: the run's, to render a templated `hosts:` as Ansible will (keyed by the pattern as written);
    None: every pattern as written."""
    by_text = {step.hosts: step for step in steps}
    if params is None:
        return StepHosts(resolve_hosts(inventory, sorted(by_text), limit))
    manager = _manager(inventory, limit)
    groups = _read(inventory, manager.get_groups_dict)
    patterns = {text: rendered_pattern(step, params, groups) for text, step in sorted(by_text.items())}
    return StepHosts({text: _hosts(inventory, manager, pattern) for text, pattern in patterns.items()})


def resolve_hosts(inventory: Path, patterns: list[str], limit: str | None = None) -> dict[str, list[str]]:
    """pattern -> host names, in inventory order."""
    manager = _manager(inventory, limit)
    return {pattern: _hosts(inventory, manager, pattern) for pattern in patterns}


def _manager(inventory: Path, limit: str | None) -> Any:
    if not inventory.exists():
        raise InvalidInput(f"inventory {inventory} does not exist")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    def load() -> Any:
        with contextlib.redirect_stderr(io.StringIO()):  # ansible's own warnings (e.g. host and group share a name)
            manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
        if limit:
            manager.subset(limit)
        return manager

    return _read(inventory, load)


def _hosts(inventory: Path, manager: Any, pattern: Pattern) -> list[str]:
    return _read(inventory, lambda: [h.name for h in manager.get_hosts(pattern=pattern)])


def _read(inventory: Path, read: Callable[[], T]) -> T:
    try:
        return read()
    except Exception as exc:  # ansible raises AnsibleError subclasses with readable text
        raise InvalidInput(f"cannot read inventory {inventory}: {exc}") from exc


def group_all_vars(inventory: Path) -> dict[str, Any]:
    """The variables the inventory gives every host (its `all` group: inline vars and group_vars/all), for the
    notification templates (`inventory.runbook_notify_webhook`); plain values only, {} when it cannot be read."""
    try:
        return _read(inventory, lambda: _all_vars(inventory))
    except InvalidInput:
        return {}


def _all_vars(inventory: Path) -> dict[str, Any]:
    from ansible.plugins.loader import init_plugin_loader
    from ansible.vars.plugins import get_vars_from_path

    with warnings.catch_warnings():  # "already configured" when this process loaded plugins before: harmless
        warnings.simplefilter("ignore")
        init_plugin_loader()
    manager = _manager(inventory, None)
    group = manager.groups["all"]
    found = dict(group.get_vars())
    base = inventory if inventory.is_dir() else inventory.parent
    with contextlib.redirect_stderr(io.StringIO()):
        found.update(get_vars_from_path(manager._loader, str(base.resolve()), [group], "task"))
    plain: dict[str, Any] = {}
    for key, value in found.items():
        with contextlib.suppress(Exception):  # a vault value without its secret, say: left out
            if _plain(value) is not None:
                plain[str(key)] = _plain(value)
    return plain


def _plain(value: Any) -> Any:
    """A str, number, bool or list of them as a plain Python value (ansible-core 2.19 tags its strings); None
    for anything else."""
    if isinstance(value, list):
        items = [_plain(item) for item in value]
        return items if all(item is not None for item in items) else None
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return None
