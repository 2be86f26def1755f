#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""mongodump into a .partial archive, or mongorestore from a verified one; credentials via --config only."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_mongo
short_description: Run mongodump into a .partial archive or mongorestore from an archive, password never in argv
description:
  - C(action=dump) - C(mongodump --archive=<dir>/<name>.archive.gz.partial --gzip --db <database>), then
    fsyncs the file. M(runbook.ops.backup_verify) decodes it and M(runbook.ops.backup_finalize) renames it and
    writes the manifest and C(.latest).
  - C(action=restore) - C(mongorestore --archive=<file> --gzip --nsInclude <db>.* --drop) for the whole database,
    or one C(--nsInclude <db>.<collection>) per listed collection for a selective restore.
  - The password (and a URI, which may carry credentials) go into a YAML file given with C(--config) (MongoDB
    Database Tools 100.3.0 or newer), created mode 0600 in a private directory and removed afterwards - never
    on the command line.
  - In check mode, says what it would run.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  action: {description: What to run., type: str, choices: [dump, restore], required: true}
  database: {description: Database to dump or restore., type: str, required: true}
  dir: {description: Backup directory (dump)., type: path, default: ""}
  name: {description: "Backup name (dump); empty - C(<database>[-<tag>]-<UTC yyyymmddTHHMMSSZ>).", type: str, default: ""}
  tag: {description: Word between the database name and the time in a generated name., type: str, default: ""}
  archive: {description: Archive to restore from (restore)., type: path, default: ""}
  manifest:
    description: >-
      The archive's manifest (restore). A backup backup_retention compressed is decoded beside it into a scratch
      file proved equal to the original's sha256; while it is read, C(.reading-<name>@<pid>) keeps retention away.
    type: path
    default: ""
  collections: {description: Collections to restore (empty - the whole database)., type: list, elements: str, default: []}
  drop: {description: Drop each collection before restoring it (C(--drop))., type: bool, default: true}
  remove_stale_partials: {description: Remove leftovers of interrupted dumps of this database first., type: bool, default: true}
  uri: {description: Connection string (goes into the config file, never argv)., type: str, default: "", no_log: true}
  login_host: {description: Server host., type: str, default: localhost}
  login_port: {description: Server port., type: int, default: 27017}
  login_user: {description: User (empty - no authentication)., type: str, default: ""}
  login_password: {description: Password (goes into the config file, never argv)., type: str, default: "", no_log: true}
  auth_database: {description: Authentication database., type: str, default: admin}
  bin_dir: {description: Directory of mongodump/mongorestore (empty - PATH)., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Dump the catalog database
  runbook.ops.backup_mongo:
    action: dump
    database: catalog
    dir: /var/backups/runbook/mongodb/catalog
    login_user: backup
    login_password: "{{ mongo_password }}"
  no_log: true
"""

RETURN = r"""
name: {description: Backup name (dump)., returned: dump, type: str}
partial: {description: The .partial archive written (dump)., returned: dump, type: str}
data: {description: Path the archive gets once finalized (dump)., returned: dump, type: str}
tools: {description: Tool version., returned: always, type: dict}
command: {description: The argv run (no secrets in it)., returned: always, type: list}
restored: {description: What was restored (restore)., returned: restore, type: str}
"""

import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.backup_files import (
    PARTIAL_SUFFIX, backup_paths, fsync_path, safe_file_part,
)
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import check_dir
from ansible_collections.runbook.ops.plugins.module_utils.backup_reading import NotReadable, reading


MIN_TOOLS = (100, 3, 0)  # --config appeared in MongoDB Database Tools 100.3.0


class MongoError(Exception):
    pass


def yaml_string(value):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=True)


def config_text(password="", uri=""):
    lines = []
    if uri:
        lines.append("uri: %s" % yaml_string(uri))
    if password:
        lines.append("password: %s" % yaml_string(password))
    return "\n".join(lines) + "\n" if lines else ""


def ns_escape(text):
    """Escape the characters --nsInclude treats as special."""
    return text.replace("\\", "\\\\").replace("*", "\\*")


def connection_args(params, config_path):
    args = []
    if config_path:
        args.append("--config=%s" % config_path)
    if not params.get("uri"):
        args += ["--host=%s" % (params.get("login_host") or "localhost"),
                 "--port=%d" % int(params.get("login_port") or 27017)]
        if params.get("login_user"):
            args += ["--username=%s" % params["login_user"],
                     "--authenticationDatabase=%s" % (params.get("auth_database") or "admin")]
    return args


def dump_argv(params, partial, config_path):
    tool = os.path.join(params["bin_dir"], "mongodump") if params.get("bin_dir") else "mongodump"
    return [tool] + connection_args(params, config_path) + [
        "--db=%s" % params["database"], "--archive=%s" % partial, "--gzip"]


def restore_argv(params, archive, config_path):
    tool = os.path.join(params["bin_dir"], "mongorestore") if params.get("bin_dir") else "mongorestore"
    argv = [tool] + connection_args(params, config_path) + ["--archive=%s" % archive, "--gzip"]
    collections = params.get("collections") or []
    db = ns_escape(params["database"])
    if collections:
        argv += ["--nsInclude=%s.%s" % (db, ns_escape(c)) for c in collections]
    else:
        argv.append("--nsInclude=%s.*" % db)
    if params.get("drop", True):
        argv.append("--drop")
    argv.append("--stopOnError")
    return argv


def tools_version(tool):
    try:
        out = subprocess.run([tool, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, check=False).stdout.decode("utf-8", "replace")
    except OSError as exc:
        raise MongoError("%s is not installed (%s): install the MongoDB Database Tools (100.3.0 or newer)" % (
            tool, exc))
    line = out.strip().splitlines()[0] if out.strip() else ""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", line)
    if not m or tuple(int(x) for x in m.groups()) < MIN_TOOLS:
        raise MongoError("%s reports %r; 100.3.0 or newer is needed (--config keeps the password off the command "
                         "line)" % (tool, line))
    return line


class ConfigFile(object):
    """The --config YAML with the secrets: mode 0600 in a 0700 directory, removed on exit."""

    def __init__(self, password, uri):
        self.text = config_text(password, uri)
        self.dir = None
        self.path = ""

    def __enter__(self):
        if self.text:
            self.dir = tempfile.mkdtemp(prefix="runbook-mongo-")
            self.path = os.path.join(self.dir, "config.yaml")
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, self.text.encode("utf-8"))
            finally:
                os.close(fd)
        return self

    def __exit__(self, *exc):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def run_tool(argv, secrets):
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    err = proc.stderr.decode("utf-8", "replace")
    for secret in secrets:
        if secret:
            err = err.replace(secret, "********")
    return proc.returncode, err


def backup_name(database, tag, directory, now=None):
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    base = "%s-%s%s" % (safe_file_part(database), (safe_file_part(tag) + "-") if tag else "", stamp)
    name, n = base, 1
    while any(os.path.lexists(p) for p in backup_paths(directory, name, "archive").values()):
        n += 1
        name = "%s-%d" % (base, n)
    return name


def dump(params, check_mode=False):
    directory = os.path.abspath(params["dir"] or "")
    if not params.get("dir"):
        raise MongoError("dir is required for a dump")
    tool = os.path.join(params["bin_dir"], "mongodump") if params.get("bin_dir") else "mongodump"
    version = tools_version(tool)
    name = params.get("name") or backup_name(params["database"], params.get("tag") or "", directory)
    paths = backup_paths(directory, name, "archive")
    prefix = os.path.join(glob.escape(directory), glob.escape(safe_file_part(params["database"])) + "-")
    stale = sorted(glob.glob(prefix + "*" + PARTIAL_SUFFIX)) if params.get("remove_stale_partials", True) else []
    result = {"changed": True, "name": name, "dir": directory, "database": params["database"], "format": "archive",
              "partial": paths["partial"], "data": paths["data"], "manifest": paths["manifest"],
              "tools": {"mongodump": version}, "compression": "gzip", "removed_partials": stale,
              "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
              "command": dump_argv(params, paths["partial"], "<config>" if config_text(
                  params.get("login_password"), params.get("uri")) else "")}
    if check_mode:
        result["msg"] = "would dump %s into %s" % (params["database"], paths["partial"])
        return result
    check_dir(directory)  # a link planted for the backup directory would send the dump elsewhere
    for path in stale:
        os.unlink(path)
    t0 = time.time()
    with ConfigFile(params.get("login_password"), params.get("uri")) as cfg:
        argv = dump_argv(params, paths["partial"], cfg.path)
        rc, err = run_tool(argv, [params.get("login_password"), params.get("uri")])
    if rc != 0:
        if os.path.lexists(paths["partial"]):
            os.unlink(paths["partial"])
        raise MongoError("mongodump of %s failed (exit %d): %s" % (params["database"], rc, err.strip()[-2000:]))
    fsync_path(paths["partial"])
    fsync_path(directory)
    result["dump_s"] = round(time.time() - t0, 3)
    result["msg"] = "dumped %s into %s" % (params["database"], paths["partial"])
    return result


def restore(params, check_mode=False):
    archive = params.get("archive") or ""
    if not archive or not os.path.isfile(archive):
        raise MongoError("archive %r does not exist" % archive)
    tool = os.path.join(params["bin_dir"], "mongorestore") if params.get("bin_dir") else "mongorestore"
    version = tools_version(tool)
    what = ", ".join(params.get("collections") or []) or "all collections"
    result = {"changed": True, "database": params["database"], "tools": {"mongorestore": version},
              "command": restore_argv(params, archive, "<config>" if config_text(
                  params.get("login_password"), params.get("uri")) else "")}
    if check_mode:
        result["restored"] = "would restore %s of %s from %s" % (what, params["database"], archive)
        return result
    with reading(archive, params.get("manifest")) as plain, \
            ConfigFile(params.get("login_password"), params.get("uri")) as cfg:
        rc, err = run_tool(restore_argv(params, plain, cfg.path), [params.get("login_password"), params.get("uri")])
    if rc != 0:
        raise MongoError("mongorestore of %s failed (exit %d): %s" % (params["database"], rc, err.strip()[-2000:]))
    result["restored"] = "%s of %s restored from %s%s" % (
        what, params["database"], os.path.basename(archive), " (dropped first)" if params.get("drop", True) else "")
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True, choices=["dump", "restore"]),
            database=dict(type="str", required=True),
            dir=dict(type="path", default=""),
            name=dict(type="str", default=""),
            tag=dict(type="str", default=""),
            archive=dict(type="path", default=""),
            manifest=dict(type="path", default=""),
            collections=dict(type="list", elements="str", default=[]),
            drop=dict(type="bool", default=True),
            remove_stale_partials=dict(type="bool", default=True),
            uri=dict(type="str", default="", no_log=True),
            login_host=dict(type="str", default="localhost"),
            login_port=dict(type="int", default=27017),
            login_user=dict(type="str", default=""),
            login_password=dict(type="str", default="", no_log=True),
            auth_database=dict(type="str", default="admin"),
            bin_dir=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    try:
        if module.params["action"] == "dump":
            result = dump(module.params, module.check_mode)
        else:
            result = restore(module.params, module.check_mode)
    except NotReadable as exc:
        module.fail_json(msg="%s check failed: %s" % (exc.check, exc.detail))
    except (MongoError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
