#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Every backup directory of a host, and in each the newest backup that passes verification: the recovery point
an operator can count on right now."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_catalog
short_description: The newest verified backup of every database in the backup directories of a host
description:
  - Each path of O(dirs) is a backup directory (it holds manifests or a C(.latest) marker) or a parent of backup
    directories (C(/var/backups/runbook/postgres) holds one per database); paths that do not exist are skipped.
  - In each backup directory the finished backups (those with a manifest) are verified newest first - manifest,
    kind, files, sizes and sha256, and with O(decode) the full decode and row counts - until one passes; that one
    is the newest verified backup. The newest backup is reported too, with the check it failed if it did.
  - Reads only; runs the same in check mode.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  dirs: {description: Backup directories or their parents., type: list, elements: path, default: [/var/backups/runbook/postgres, /var/backups/runbook/mongodb]}
  decode: {description: Also decode every byte of the backup checked (slow for large backups)., type: bool, default: false}
  bin_dir: {description: Directory of pg_restore (empty - PATH)., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Survey the backups
  runbook.ops.backup_catalog:
    dirs: [/var/backups/runbook/postgres]
"""

RETURN = r"""
databases:
  description: "Per backup directory - dir, database, kind, backups (how many finished), latest_marker, newest
    ({name, finished, ok, failed_check, detail}) and verified ({name, finished, size, sha256}, or null)."
  returned: always
  type: list
"""

import json
import os

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.backup_check import Refused, verify
from ansible_collections.runbook.ops.plugins.module_utils.backup_files import LATEST_MARKER, MANIFEST_SUFFIX

DEFAULT_DIRS = ["/var/backups/runbook/postgres", "/var/backups/runbook/mongodb"]


def _is_backup_dir(path):
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return LATEST_MARKER in names or any(n.endswith(MANIFEST_SUFFIX) for n in names)


def backup_dirs(paths):
    found = []
    for path in paths:
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            continue
        if _is_backup_dir(path):
            found.append(path)
            continue
        for name in sorted(os.listdir(path)):
            child = os.path.join(path, name)
            if os.path.isdir(child) and _is_backup_dir(child):
                found.append(child)
    return sorted(set(found))


def finished_backups(directory):
    """(finished, name, manifest) of every backup with a readable manifest, newest first."""
    out = []
    for entry in os.listdir(directory):
        if not entry.endswith(MANIFEST_SUFFIX):
            continue
        try:
            with open(os.path.join(directory, entry), "rb") as handle:
                manifest = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError):
            manifest = {}
        if not isinstance(manifest, dict):
            manifest = {}
        name = entry[: -len(MANIFEST_SUFFIX)]
        out.append((str(manifest.get("finished") or ""), name, manifest))
    out.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return out


def survey(directory, decode=False, bin_dir=""):
    backups = finished_backups(directory)
    try:
        with open(os.path.join(directory, LATEST_MARKER)) as handle:
            marker = handle.read().strip()
    except OSError:
        marker = ""
    entry = {"dir": directory, "database": os.path.basename(directory), "kind": "", "backups": len(backups),
             "latest_marker": marker, "newest": None, "verified": None}
    for finished, name, manifest in backups:
        kind = manifest.get("kind") if manifest.get("kind") in ("postgres", "mongodb") else "postgres"
        entry["kind"] = entry["kind"] or kind
        entry["database"] = manifest.get("database") or entry["database"]
        try:
            verify(dict(dir=directory, backup=name, kind=kind, decode=decode, bin_dir=bin_dir))
            state = {"name": name, "finished": finished, "ok": True, "failed_check": "", "detail": "verified"}
        except Refused as exc:
            state = {"name": name, "finished": finished, "ok": False, "failed_check": exc.check, "detail": exc.detail}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            state = {"name": name, "finished": finished, "ok": False, "failed_check": "manifest", "detail": str(exc)}
        if entry["newest"] is None:
            entry["newest"] = state
        if state["ok"]:
            entry["verified"] = {"name": name, "finished": finished, "size": manifest.get("size"),
                                 "sha256": manifest.get("sha256"), "format": manifest.get("format"),
                                 "compression": str(manifest.get("compression") or ""),
                                 "offsite": manifest.get("offsite") if isinstance(manifest.get("offsite"), dict)
                                 else None}
            break
    return entry


def catalog(params):
    dirs = params.get("dirs") or DEFAULT_DIRS
    found = [survey(d, bool(params.get("decode")), params.get("bin_dir") or "") for d in backup_dirs(dirs)]
    verified = sum(1 for d in found if d["verified"])
    return {"changed": False, "databases": found,
            "msg": "%d backup directories, %d with a verified backup" % (len(found), verified)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dirs=dict(type="list", elements="path", default=DEFAULT_DIRS),
            decode=dict(type="bool", default=False),
            bin_dir=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    try:
        result = catalog(module.params)
    except OSError as exc:
        module.fail_json(msg="cannot survey the backups: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
