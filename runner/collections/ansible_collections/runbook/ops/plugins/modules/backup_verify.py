#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Prove a backup is whole before anyone relies on it: manifest, sizes, sha256, full decode, row counts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_verify
short_description: Verify a backup against its manifest and by decoding all of it
description:
  - With O(backup), finds a finished backup in O(dir) (C(latest) follows the C(.latest) marker) and runs the
    checks in order, stopping at the first that fails - C(found), C(manifest), C(kind), C(database),
    C(files), C(size) (missing, empty or truncated files), C(sha256) (any flipped bit), C(decode) (a full
    decode - C(pg_restore -f -) for PostgreSQL, reading the whole gzip stream for MongoDB archives), C(rows)
    (row counts in the decoded data against the manifest) and C(tables) (the tables asked for are in it).
  - The failure message names the check that failed and why; every check run is returned as C(checks).
  - With O(path) instead, decodes a raw data path that has no manifest yet (a C(.partial) before it is
    finalized) and returns what it holds (PostgreSQL - row counts per table).
  - Reads only; runs the same in check mode.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  dir: {description: Backup directory., type: path, default: ""}
  backup: {description: "C(latest) (the C(.latest) marker), another marker (C(.pre-migration-<run>)), a backup name, or the path of its data or manifest file.", type: str, default: ""}
  path: {description: Raw data path to decode (no manifest checks)., type: path, default: ""}
  kind: {description: What the backup is of., type: str, choices: [postgres, mongodb], default: postgres}
  format: {description: Data format when O(path) is given., type: str, choices: [custom, directory, archive], default: custom}
  database: {description: Database the backup must be of (empty - any)., type: str, default: ""}
  tables: {description: Tables (PostgreSQL) or collections (MongoDB) that must be in the backup., type: list, elements: str, default: []}
  decode: {description: Run the full decode check., type: bool, default: true}
  bin_dir: {description: Directory of pg_restore (empty - PATH)., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Refuse a bad backup before touching the live database
  runbook.ops.backup_verify:
    dir: /var/backups/runbook/postgres/shop
    backup: latest
    database: shop
"""

RETURN = r"""
ok: {description: Every check passed., returned: always, type: bool}
checks: {description: "Checks run, in order: list of {name, ok, detail}.", returned: always, type: list}
name: {description: Backup name., returned: when found, type: str}
path: {description: Data path (file or directory)., returned: when found, type: str}
manifest_path: {description: Manifest path., returned: when found, type: str}
manifest: {description: The manifest., returned: when found, type: dict}
tables: {description: Row counts per table found by decoding (PostgreSQL)., returned: when decoded, type: dict}
"""

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.backup_check import (  # noqa: F401 (the module's API)
    Refused, decode_mongo_archive, locate, verify,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type="path", default=""),
            backup=dict(type="str", default=""),
            path=dict(type="path", default=""),
            kind=dict(type="str", default="postgres", choices=["postgres", "mongodb"]),
            format=dict(type="str", default="custom", choices=["custom", "directory", "archive"]),
            database=dict(type="str", default=""),
            tables=dict(type="list", elements="str", default=[]),
            decode=dict(type="bool", default=True),
            bin_dir=dict(type="str", default=""),
        ),
        required_one_of=[("backup", "path")],
        mutually_exclusive=[("backup", "path")],
        supports_check_mode=True,
    )
    try:
        result = verify(module.params)
    except Refused as exc:
        result = getattr(exc, "result", {"checks": []})
        result.update(changed=False, ok=False, failed_check=exc.check)
        module.fail_json(msg="backup refused: %s" % exc, **result)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="backup refused: %s" % exc, changed=False, ok=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
