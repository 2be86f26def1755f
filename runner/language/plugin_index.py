"""Every Jinja filter and test Ansible can resolve, as JSON on stdout (run in a child process by plugin_names).

Ansible's own plugin loader lists them: ansible.builtin's and those of every installed collection (the product's
runbook.ops included, through ANSIBLE_COLLECTIONS_PATH), each by its fully qualified name, plus the redirects of
the collections' meta/runtime.yml (ansible.builtin.json_query is community.general.json_query). A child process
keeps Ansible's global loader state, and its import time, out of `runbook validate`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

KINDS = ("filter", "test")


def plugin_index() -> dict[str, Any]:
    from ansible.collections.list import list_collections
    from ansible.plugins.list import list_plugins
    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader._collection_finder import _get_collection_metadata

    init_plugin_loader([])
    collections = ["ansible.builtin", *sorted(list_collections())]
    index: dict[str, Any] = {"collections": collections}
    for kind in KINDS:
        redirects: dict[str, str] = {}
        for collection in collections:
            try:
                routing = (_get_collection_metadata(collection) or {}).get("plugin_routing") or {}
            except Exception:  # a collection with unreadable metadata still has its plugins
                continue
            for name, entry in (routing.get(kind) or {}).items():
                if isinstance(entry, dict) and isinstance(entry.get("redirect"), str):
                    redirects[f"{collection}.{name}"] = entry["redirect"]
        index[kind] = {"names": sorted(list_plugins(kind)), "redirects": redirects}
    return index


def main() -> int:
    json.dump(plugin_index(), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
