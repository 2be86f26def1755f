#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""First half of a PostgreSQL backup: pg_dump into <name>.dump.partial (or .dir.partial), fsynced."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_dump_partial
short_description: Dump a PostgreSQL database into a .partial file or directory, fsynced
description:
  - Runs C(pg_dump) in custom (C(-Fc)) or directory (C(-Fd -j N)) format into C(<dir>/<name>.dump.partial)
    (or C(<name>.dir.partial)), then fsyncs it. Nothing is called a backup yet; M(runbook.ops.backup_finalize)
    renames it, writes the manifest and moves C(.latest).
  - With O(verify), decodes all of the dump and counts the rows of every table (returned as C(tables)). In
    directory format every data file is decompressed while pg_dump is still writing it (the gzip CRC and length
    of each file are checked at its end) and C(pg_restore --list) then names the table of each file, so the
    decode is done seconds after the dump; the custom format is decoded afterwards by C(pg_restore -f -).
    A dump that does not decode fails the module and its C(.partial) is removed.
  - Probes first (tool and server versions, database properties); in check mode it only probes and says what
    it would run.
  - The password reaches libpq through an in-memory password file (memfd), never argv or the environment.
  - Stale C(.partial) leftovers of earlier interrupted backups of the same database are removed first.
version_added: "0.1.0"
author: runbook-runner maintainers
extends_documentation_fragment: [runbook.ops.postgres]
options:
  database: {description: Database to dump., type: str, required: true}
  dir: {description: Backup directory; created (with its parents) when missing., type: path, required: true}
  dir_mode: {description: "Mode of the backup directory, set when it is created or differs (backups hold the data - owner only by default).", type: str, default: "0700"}
  name: {description: "Backup name; empty: C(<database>[-<tag>]-<UTC yyyymmddTHHMMSSZ>).", type: str, default: ""}
  tag: {description: Word put between the database name and the time in a generated name., type: str, default: ""}
  format: {description: pg_dump archive format., type: str, choices: [custom, directory], default: custom}
  jobs: {description: Parallel dump jobs (directory format only)., type: int, default: 2}
  compression:
    description:
      - C(auto) (zstd where pg_dump supports it, 16 and newer; else gzip), C(gzip), C(zstd), C(lz4) or C(none),
        optionally with a level (C(gzip:9), C(zstd:3)).
    type: str
    default: auto
  lock_wait_timeout: {description: pg_dump --lock-wait-timeout (empty waits forever)., type: str, default: ""}
  runbook_timeout:
    description:
      - Seconds the dump (and its decode) may take (0 - no limit; the rendered step sets it from its C(timeout)).
        At the limit, or when the run that started the module is gone, pg_dump is ended, the C(.partial) removed
        and the module fails saying no backup was made.
    type: float
    default: 0.0
  verify: {description: Decode all of the dump and count the rows of every table (returned as C(tables))., type: bool, default: false}
  remove_stale_partials: {description: Remove leftovers of interrupted backups of this database first., type: bool, default: true}
"""

EXAMPLES = r"""
- name: Dump shop into a .partial file
  runbook.ops.pg_dump_partial:
    database: shop
    dir: /var/backups/runbook/postgres/shop
    login_host: 127.0.10.21
    login_user: lab
    login_password: "{{ db_password }}"
  no_log: true
"""

RETURN = r"""
name: {description: Backup name., returned: always, type: str}
partial: {description: Path of the .partial file or directory written., returned: always, type: str}
data: {description: Path the data gets once finalized., returned: always, type: str}
manifest: {description: Path the manifest gets once finalized., returned: always, type: str}
format: {description: custom or directory., returned: always, type: str}
compression: {description: "Compression used (method[:level]).", returned: always, type: str}
server_version: {description: Server version string., returned: always, type: str}
tools: {description: Client tool versions (pg_dump, pg_restore)., returned: always, type: dict}
database_properties: {description: Encoding, collation, ctype and owner of the database., returned: always, type: dict}
started: {description: UTC start time (ISO 8601)., returned: always, type: str}
dump_s: {description: Seconds pg_dump took., returned: success, type: float}
tables: {description: Rows per table found by decoding the dump., returned: with verify, type: dict}
decode: {description: "How the dump was decoded (C(followed) while dumping, or C(pg_restore)) and the seconds it added after pg_dump.", returned: with verify, type: dict}
created_dir: {description: Whether the backup directory was created (or would be, in check mode)., returned: always, type: bool}
removed_partials: {description: Leftovers of interrupted backups that were removed., returned: always, type: list}
command: {description: The pg_dump argv (no secrets in it)., returned: always, type: list}
"""

import glob
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
    MANIFEST_SUFFIX, PARTIAL_SUFFIX, backup_paths, fsync_path, fsync_tree, safe_file_part,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    LOGIN_ARGUMENT_SPEC, PgClient, PgError, exit_module, tail, tool_major, utc_iso, utc_stamp,
)
from ansible_collections.runbook.ops.plugins.module_utils.host_work import current_work
from ansible_collections.runbook.ops.plugins.module_utils.pg_decode import (
    DecodeError, DirectoryFollower, decode_postgres, followed_tables, wait_and_follow,
)
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import TEMP_SUFFIX, ensure_dir


COMPRESSION = re.compile(r"^(auto|gzip|zstd|lz4|none)(?::(\d+))?$")


def compression_args(spec, pg_dump_major):
    """pg_dump arguments for a compression spec, and the effective spec for the manifest."""
    m = COMPRESSION.match(spec or "auto")
    if not m:
        raise ValueError("compression must be auto, gzip, zstd, lz4 or none, optionally with :LEVEL (got %r)" % spec)
    method, level = m.group(1), m.group(2)
    if method == "auto":
        method = "zstd" if pg_dump_major >= 16 else "gzip"
    if pg_dump_major >= 16:
        detail = method + (":" + level if level and method != "none" else "")
        return ["--compress=" + detail], detail
    if method in ("zstd", "lz4"):
        raise ValueError(
            "pg_dump %d compresses with gzip only (%s needs pg_dump 16 or newer); use compression auto or gzip"
            % (pg_dump_major, method)
        )
    if method == "none":
        return ["-Z", "0"], "none"
    if level is not None:
        if not 1 <= int(level) <= 9:
            raise ValueError("gzip level must be 1..9 (got %s)" % level)
        return ["-Z", level], "gzip:" + level
    return [], "gzip"


def backup_name(database, tag, directory, fmt, now=None):
    """<database>[-<tag>]-<UTC stamp>, with -2, -3... when a backup of that second already exists."""
    base = "%s-%s%s" % (safe_file_part(database), (safe_file_part(tag) + "-") if tag else "", utc_stamp(now))
    name, n = base, 1
    while True:
        paths = backup_paths(directory, name, fmt)
        if not any(os.path.lexists(p) for p in paths.values()):
            return name
        n += 1
        name = "%s-%d" % (base, n)


def stale_partials(directory, database):
    """Leftovers of interrupted backups of this database: *.partial data and *.tmp manifests/markers."""
    prefix = os.path.join(glob.escape(directory), glob.escape(safe_file_part(database)) + "-")
    temps = os.path.join(glob.escape(directory), "." + glob.escape(safe_file_part(database)) + "-")
    found = glob.glob(prefix + "*" + PARTIAL_SUFFIX) + glob.glob(prefix + "*" + MANIFEST_SUFFIX + ".tmp")
    found += glob.glob(temps + "*" + MANIFEST_SUFFIX + ".*" + TEMP_SUFFIX)  # the one writer's temporary names
    return sorted(set(found))


def dir_mode(text):
    try:
        mode = int(str(text), 8)
    except ValueError:
        raise ValueError("dir_mode must be an octal mode such as 0700 (got %r)" % text)
    if not 0 <= mode <= 0o7777:
        raise ValueError("dir_mode must be an octal mode such as 0700 (got %r)" % text)
    return mode


def prepare_directory(directory, mode):
    """Create the backup directory (and parents) with exactly `mode`, or set `mode` on it when it differs; a
    link planted there is refused (it would send the backup, and the mode, elsewhere)."""
    ensure_dir(directory, mode, set_mode=True)


def remove_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def dump_argv(client, database, partial, fmt, jobs, compression, lock_wait_timeout):
    argv = [client.tool("pg_dump"), "-F", "c" if fmt == "custom" else "d", "-f", partial]
    if fmt == "directory":
        argv += ["-j", str(max(1, int(jobs)))]
    argv += compression
    if lock_wait_timeout:
        argv += ["--lock-wait-timeout=" + lock_wait_timeout]
    argv += ["-d", client.conninfo(database)]
    return argv


PROBE_SQL = """SELECT json_build_object(
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'encoding', pg_encoding_to_char(d.encoding),
  'collate', d.datcollate, 'ctype', d.datctype,
  'owner', pg_get_userbyid(d.datdba))
FROM pg_database d WHERE d.datname = current_database();
"""


def probe(client, database):
    tools = {"pg_dump": client.version("pg_dump"), "pg_restore": client.version("pg_restore")}
    info = client.query_json(database, PROBE_SQL, what="probe of database %s" % database)
    props = {k: info[k] for k in ("encoding", "collate", "ctype", "owner")}
    return tools, info, props


def plan_dump(params, client):
    """Probe the server and name the backup: the result as it stands before pg_dump runs, and the backup's paths."""
    database = params["database"]
    directory = os.path.abspath(params["dir"])
    fmt = params.get("format") or "custom"
    tools, info, props = probe(client, database)
    compression, effective = compression_args(params.get("compression") or "auto", tool_major(tools["pg_dump"]))
    name = params.get("name") or backup_name(database, params.get("tag") or "", directory, fmt)
    paths = backup_paths(directory, name, fmt)
    argv = dump_argv(
        client, database, paths["partial"], fmt, params.get("jobs") or 2, compression,
        params.get("lock_wait_timeout") or "",
    )
    result = {
        "changed": True, "name": name, "dir": directory, "database": database, "format": fmt,
        "partial": paths["partial"], "data": paths["data"], "manifest": paths["manifest"],
        "compression": effective, "server_version": info["server_version"],
        "server_version_num": info["server_version_num"], "tools": tools, "database_properties": props,
        "started": utc_iso(), "removed_partials": [], "command": argv,
    }
    result["created_dir"] = not os.path.isdir(directory)
    if params.get("remove_stale_partials", True) and not result["created_dir"]:
        result["removed_partials"] = stale_partials(directory, database)
    return result, paths


def run(params, check_mode=False):
    """Everything the module does, callable without Ansible. Returns the result dict; raises PgError/ValueError."""
    client = PgClient.from_params(params)
    result, paths = plan_dump(params, client)
    database, directory, fmt = result["database"], result["dir"], result["format"]
    mode = dir_mode(params.get("dir_mode") or "0700")
    if check_mode:
        result["msg"] = "would %sdump %s into %s (%s, %s)" % (
            "create %s and " % directory if result["created_dir"] else "", database, paths["partial"], fmt,
            result["compression"])
        return result
    prepare_directory(directory, mode)
    for path in result["removed_partials"]:
        remove_path(path)
    if any(os.path.lexists(p) for p in paths.values()):
        raise ValueError("backup %s already exists in %s" % (result["name"], directory))
    t0 = time.time()
    verify = bool(params.get("verify"))
    follower = DirectoryFollower(paths["partial"]) if verify and fmt == "directory" else None
    rc, err = run_pg_dump(client, result["command"], follower)
    try:
        if rc != 0:
            if follower is not None and follower.error is not None:
                raise DecodeError(str(follower.error))
            raise PgError("pg_dump of %s failed (exit %d): %s" % (database, rc, tail(err)))
        result["dump_s"] = round(time.time() - t0, 3)
        if verify:
            result["tables"], result["decode"] = decode_dump(paths["partial"], fmt, follower, params.get("bin_dir") or "")
    except (PgError, DecodeError) as exc:
        if follower is not None:
            follower.stop()
        if os.path.lexists(paths["partial"]):
            remove_path(paths["partial"])
        work = current_work()
        if work.stopped:
            raise PgError("pg_dump of %s %s; its unfinished .partial was removed, no backup was made"
                          % (database, work.describe()))
        if isinstance(exc, DecodeError):
            raise PgError("the dump of %s does not decode: %s" % (database, exc))
        raise
    fsync_tree(paths["partial"])
    fsync_path(directory)
    result["msg"] = "dumped %s into %s in %.1fs%s" % (
        database, paths["partial"], result["dump_s"],
        (", decoded in full (%d tables, %d rows)" % (len(result["tables"]), sum(result["tables"].values())))
        if verify else "")
    return result


def run_pg_dump(client, argv, follower):
    """pg_dump's exit status and error output; a follower decodes a directory dump while it is written."""
    with tempfile.TemporaryFile() as errfile:
        proc = client.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile)
        try:
            if follower is not None:
                follower.start()
                rc = wait_and_follow(proc, follower)
            else:
                rc = proc.wait()
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if follower is not None:
                follower.stop()
            raise
        finally:
            client.close_secret(proc)
        errfile.seek(0)
        return rc, errfile.read().decode("utf-8", "replace")


def decode_dump(partial, fmt, follower, bin_dir):
    """Row counts per table and how they were found; a directory dump followed while it was written is
    mapped to its tables through the TOC, anything else is decoded by pg_restore."""
    t0 = time.time()
    tables, how = None, "pg_restore"
    if follower is not None:
        tables = followed_tables(partial, follower.finish(), bin_dir)
        how = "followed"
    if tables is None:
        tables, how = decode_postgres(partial, bin_dir), "pg_restore"
    return tables, {"method": how, "after_dump_s": round(time.time() - t0, 3)}


def main():
    exit_module(AnsibleModule, run, argument_spec=dict(
        LOGIN_ARGUMENT_SPEC,
        database=dict(type="str", required=True),
        dir=dict(type="path", required=True),
        dir_mode=dict(type="str", default="0700"),
        name=dict(type="str", default=""),
        tag=dict(type="str", default=""),
        format=dict(type="str", default="custom", choices=["custom", "directory"]),
        jobs=dict(type="int", default=2),
        compression=dict(type="str", default="auto"),
        lock_wait_timeout=dict(type="str", default=""),
        verify=dict(type="bool", default=False),
        remove_stale_partials=dict(type="bool", default=True),
        runbook_timeout=dict(type="float", default=0.0),
    ), name="pg_dump_partial")


if __name__ == "__main__":
    main()
