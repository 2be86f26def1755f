"""Resolve inventory patterns to host names with ansible-core's own inventory code (no subprocess)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from runner.errors import InvalidInput


def resolve_hosts(inventory: Path, patterns: list[str], limit: str | None = None) -> dict[str, list[str]]:
    """pattern -> host names, in inventory order."""
    if not inventory.exists():
        raise InvalidInput(f"inventory {inventory} does not exist")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # ansible's own warnings (e.g. host and group share a name)
            manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
        if limit:
            manager.subset(limit)
        return {pattern: [h.name for h in manager.get_hosts(pattern=pattern)] for pattern in patterns}
    except Exception as exc:  # ansible raises AnsibleError subclasses with readable text
        raise InvalidInput(f"cannot read inventory {inventory}: {exc}") from exc
