#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Second half of a backup: .partial -> final name, sha256 of every file, manifest last, then .latest."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_finalize
short_description: Turn a verified .partial into a backup - rename, checksums, manifest, .latest marker
description:
  - In this order, each step durable before the next - fsync the C(.partial) data, sha256 every file,
    rename C(.partial) to the final name, fsync the directory, write C(<name>.manifest.json) (through a
    C(.tmp) file, fsynced, renamed), then point the C(.latest) marker at the backup the same way.
  - A backup without a manifest is incomplete by definition (M(runbook.ops.backup_verify) refuses it), so
    an interruption at any moment never leaves something that looks complete; C(.latest) only ever names a
    backup whose manifest is already on disk.
  - In check mode, says what it would do.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  dir: {description: Backup directory., type: path, required: true}
  name: {description: Backup name., type: str, required: true}
  kind: {description: What the backup is of., type: str, choices: [postgres, mongodb], required: true}
  format: {description: Data format., type: str, choices: [custom, directory, archive], required: true}
  database: {description: Database the backup is of., type: str, required: true}
  metadata: {description: More manifest fields (versions, tables and row counts, started...)., type: dict, default: {}}
  update_latest: {description: Point the marker (O(marker)) at this backup., type: bool, default: true}
  marker: {description: "Marker file naming the newest backup (C(.latest); another name, e.g. C(.pre-migration-<run>), leaves C(.latest) alone).", type: str, default: .latest}
"""

EXAMPLES = r"""
- name: Finalize the backup
  runbook.ops.backup_finalize:
    dir: /var/backups/runbook/postgres/shop
    name: shop-20250101T000000Z
    kind: postgres
    format: custom
    database: shop
    metadata: {tables: {public.orders: 1000}}
"""

RETURN = r"""
backup: {description: "{path, size, sha256, database, format, name, manifest} of the backup.", returned: always, type: dict}
manifest: {description: The manifest written., returned: success, type: dict}
latest: {description: Whether the marker now names this backup., returned: always, type: bool}
marker: {description: Path of the marker file., returned: always, type: str}
"""

import datetime
import json
import os

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.backup_files import (
    LATEST_MARKER, MANIFEST_VERSION, backup_paths, data_files, fsync_path, fsync_tree, listing_digest, marker_path,
    sha256_file, write_atomic,
)
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import check_target, set_mode_of


def file_entries(partial, rel_data):
    """{path, size, sha256} of every data file, named as they will be once the .partial is renamed."""
    entries = []
    for full in data_files(partial):
        rel = os.path.relpath(full, partial)
        rel = rel_data if rel == "." else os.path.join(rel_data, rel)
        entries.append({"path": rel, "size": os.path.getsize(full), "sha256": sha256_file(full)})
    return entries


def seconds_since(started, finished):
    t0 = datetime.datetime.strptime(started, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return round((finished - t0).total_seconds(), 3)


def finalize(params, check_mode=False):
    directory = os.path.abspath(params["dir"])
    name = params["name"]
    fmt = params["format"]
    if "/" in name or name.startswith("."):
        raise ValueError("invalid backup name %r" % name)
    paths = backup_paths(directory, name, fmt)
    rel_data = os.path.basename(paths["data"])
    summary = {"path": paths["data"], "size": 0, "sha256": "", "database": params["database"], "format": fmt,
               "name": name, "manifest": paths["manifest"]}
    marker = marker_path(directory, params.get("marker") or LATEST_MARKER)
    result = {"changed": True, "backup": summary, "latest": bool(params.get("update_latest", True)), "marker": marker}
    if check_mode:
        result["msg"] = "would finalize %s: rename %s, write %s%s" % (
            name, paths["partial"], paths["manifest"], ", update %s" % os.path.basename(marker) if result["latest"] else "")
        return result
    if os.path.exists(paths["manifest"]) or os.path.lexists(paths["data"]):
        raise ValueError("backup %s already exists in %s" % (name, directory))
    if not os.path.lexists(paths["partial"]):
        raise ValueError("%s is missing: nothing to finalize" % paths["partial"])
    for target in [paths["manifest"]] + ([marker] if result["latest"] else []):
        check_target(target)  # a planted link is refused before the backup is renamed
    for full in data_files(paths["partial"]):
        set_mode_of(full, 0o600)  # backups hold the data: owner only, like the 0700 directory they are in
    fsync_tree(paths["partial"])
    entries = file_entries(paths["partial"], rel_data)
    if not entries or sum(e["size"] for e in entries) == 0:
        raise ValueError("%s is empty: nothing to finalize" % paths["partial"])
    os.rename(paths["partial"], paths["data"])
    fsync_path(directory)
    digest = entries[0]["sha256"] if fmt != "directory" else listing_digest(entries)
    size = sum(e["size"] for e in entries)
    manifest = dict(params.get("metadata") or {})
    finished = datetime.datetime.now(datetime.timezone.utc)
    manifest.update({
        "manifest_version": MANIFEST_VERSION,
        "kind": params["kind"],
        "name": name,
        "database": params["database"],
        "format": fmt,
        "data": rel_data,
        "size": size,
        "sha256": digest,
        "files": entries,
        "finished": finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    })
    if manifest.get("started"):
        try:
            manifest["duration_s"] = seconds_since(manifest["started"], finished)
        except ValueError:
            pass
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomic(paths["manifest"], text.encode("utf-8"))
    if result["latest"]:
        write_atomic(marker, (name + "\n").encode("utf-8"))
    summary.update(size=size, sha256=digest)
    result.update(manifest=manifest, duration_s=manifest.get("duration_s"))
    result["msg"] = "backup %s finalized (%d bytes, sha256 %s)%s" % (
        name, size, digest[:16], "; %s updated" % os.path.basename(marker) if result["latest"] else "")
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type="path", required=True),
            name=dict(type="str", required=True),
            kind=dict(type="str", required=True, choices=["postgres", "mongodb"]),
            format=dict(type="str", required=True, choices=["custom", "directory", "archive"]),
            database=dict(type="str", required=True),
            metadata=dict(type="dict", default={}),
            update_latest=dict(type="bool", default=True),
            marker=dict(type="str", default=LATEST_MARKER),
        ),
        supports_check_mode=True,
    )
    try:
        result = finalize(module.params, check_mode=module.check_mode)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="cannot finalize backup %s: %s" % (module.params["name"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
