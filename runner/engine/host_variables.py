"""The inventory variables of hosts (host and group vars, group_vars/ and host_vars/ files), read with
ansible-core's own code, for what the operator is shown before a step runs (runner/engine/preview.py).

Nothing is decrypted: a vaulted value stays the vault's object (preview shows it masked), and an inventory that
cannot be read without its vault password gives no variables at all.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HostVariables = dict[str, dict[str, Any]]  # host -> variable -> value as Ansible read it


def inventory_variables(inventory: Path, hosts: Iterable[str]) -> HostVariables:
    """host -> its inventory variables; {} for every host when the inventory cannot be read that way."""
    wanted = sorted(set(hosts))
    if not wanted or not inventory.exists():
        return {}
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # ansible's own warnings (a host and a group share a name)
            loader = DataLoader()
            manager = InventoryManager(loader=loader, sources=[str(inventory)])
            variables = VariableManager(loader=loader, inventory=manager)
            found = {name: manager.get_host(name) for name in wanted}
            return {
                name: dict(variables.get_vars(host=host, include_hostvars=False))
                for name, host in found.items()
                if host is not None
            }
    except Exception:  # a vaulted file without its password, an unreadable source: nothing is known before the run
        return {}
