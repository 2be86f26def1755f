#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Flush a Redis database, or only the keys that match a pattern, over the Redis protocol (standard library only:
no redis-py on the host, and the password never on a command line)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: redis_flush
short_description: Flush a Redis database or the keys matching a pattern, counting before and after
description:
  - Without O(pattern), C(FLUSHDB) of database O(db) (C(ASYNC) unless O(async_free=false)); with O(all_databases),
    C(FLUSHALL). With O(pattern), the matching keys are found with C(SCAN MATCH) (never C(KEYS), which blocks the
    server) and removed with C(UNLINK) in batches.
  - Counts before and after (C(DBSIZE), or the keys matching, counted with a C(SCAN) pass of their own), so the
    report says what was removed and whether anything matching was written meanwhile. Removal passes repeat (at
    most three) until a pass finds nothing left to remove.
  - Speaks the Redis protocol over a TCP socket - C(AUTH) with O(password) (and O(username) for ACL users) is
    sent over the connection, never on a command line.
  - In check mode, counts what would be removed and removes nothing.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  host: {description: Redis address., type: str, default: 127.0.0.1}
  port: {description: Redis port., type: int, default: 6379}
  username: {description: ACL user (Redis 6+); empty for the default user., type: str, default: ""}
  password: {description: Password; empty for none., type: str, default: "", no_log: true}
  db: {description: Database number., type: int, default: 0}
  pattern: {description: Glob pattern of the keys to remove (C(catalog:*)); empty flushes the whole database., type: str, default: ""}
  all_databases: {description: FLUSHALL - every database of the server (O(pattern) must be empty)., type: bool, default: false}
  async_free: {description: Free memory in the background (FLUSHDB ASYNC, UNLINK)., type: bool, default: true}
  batch: {description: Keys per SCAN call and per UNLINK., type: int, default: 1000}
  timeout: {description: Socket timeout in seconds., type: float, default: 10}
"""

EXAMPLES = r"""
- name: Drop the cached catalog pages
  runbook.ops.redis_flush:
    host: 127.0.10.21
    pattern: "catalog:*"
"""

RETURN = r"""
keys_before: {description: Keys in the database (whole flush) or keys matching (pattern) before., returned: always, type: int}
keys_after: {description: The same count afterwards., returned: always, type: int}
removed: {description: Keys removed (pattern) or DBSIZE before (whole flush)., returned: always, type: int}
"""

import socket

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None


# Keys are removed while SCAN walks the keyspace; another pass picks up what a pass could not see (keys written
# meanwhile, or a server that walks by offset). Bounded: a writer that never stops must not keep the step going.
DELETE_PASSES = 3


class RedisError(Exception):
    pass


class Redis(object):
    """The few commands this module needs, in RESP2 (every Redis since 2.0 speaks it)."""

    def __init__(self, host, port, timeout):
        try:
            self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        except (OSError, ValueError) as exc:
            raise RedisError("cannot connect to redis at %s:%s: %s" % (host, port, exc))
        self._file = self._sock.makefile("rb")

    def close(self):
        try:
            self._file.close()
        finally:
            self._sock.close()

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        try:
            self._sock.sendall(b"".join(parts))
            return self._reply()
        except (OSError, socket.timeout) as exc:
            raise RedisError("redis connection failed during %s: %s" % (args[0], exc))

    def _line(self):
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("redis closed the connection")
        return line[:-2]

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            raise RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            if len(data) != size + 2:
                raise RedisError("redis closed the connection")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise RedisError("unexpected reply from redis: %r" % line[:80])


def scan(client, pattern, batch):
    cursor = b"0"
    while True:
        cursor, keys = client.call("SCAN", cursor, "MATCH", pattern, "COUNT", batch)
        if keys:
            yield keys
        if cursor in (b"0", 0, "0"):
            return


def count_matching(client, pattern, batch):
    return sum(len(set(keys)) for keys in scan(client, pattern, batch))


def flush(params, check_mode=False):
    pattern = params.get("pattern") or ""
    if params.get("all_databases") and pattern:
        raise RedisError("all_databases flushes every database: it takes no pattern")
    batch = max(1, int(params.get("batch") or 1000))
    client = Redis(params.get("host") or "127.0.0.1", params.get("port") or 6379, params.get("timeout") or 10)
    try:
        if params.get("password"):
            auth = ("AUTH", params["username"], params["password"]) if params.get("username") else (
                "AUTH", params["password"])
            client.call(*auth)
        db = int(params.get("db") or 0)
        client.call("SELECT", db)
        mode = "ASYNC" if params.get("async_free", True) else "SYNC"
        where = "every database" if params.get("all_databases") else "database %d" % db
        result = {"changed": False, "db": db, "pattern": pattern, "all_databases": bool(params.get("all_databases"))}
        if not pattern:
            before = client.call("DBSIZE")
            result.update(keys_before=before, removed=before)
            if check_mode:
                result.update(changed=before > 0, keys_after=before,
                              msg="would flush %s (%d keys in database %d)" % (where, before, db))
                return result
            client.call("FLUSHALL" if params.get("all_databases") else "FLUSHDB", mode)
            after = client.call("DBSIZE")
            # an empty database flushed is no change (a second emergency rollback changes nothing); FLUSHALL may
            # have emptied other databases than the one counted
            result.update(changed=before > 0 or bool(params.get("all_databases")), keys_after=after,
                          msg="flushed %s of redis %s:%s (%d keys in database %d before, %d after)" % (
                              where, params.get("host"), params.get("port"), before, db, after))
            return result
        before = count_matching(client, pattern, batch)
        if check_mode:
            result.update(changed=before > 0, keys_before=before, keys_after=before, removed=0,
                          msg="would remove %d keys matching %s in database %d" % (before, pattern, db))
            return result
        command = "UNLINK" if params.get("async_free", True) else "DEL"
        removed = 0
        for _ in range(DELETE_PASSES):
            removed_now = 0
            for keys in scan(client, pattern, batch):
                removed_now += client.call(command, *sorted(set(keys)))
            removed += removed_now
            if removed_now == 0:
                break
        after = count_matching(client, pattern, batch)
        result.update(changed=removed > 0, keys_before=before, keys_after=after, removed=removed,
                      msg="removed %d keys matching %s in database %d (%d matching afterwards)" % (
                          removed, pattern, db, after))
        return result
    finally:
        client.close()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=6379),
            username=dict(type="str", default=""),
            password=dict(type="str", default="", no_log=True),
            db=dict(type="int", default=0),
            pattern=dict(type="str", default=""),
            all_databases=dict(type="bool", default=False),
            async_free=dict(type="bool", default=True),
            batch=dict(type="int", default=1000),
            timeout=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    try:
        result = flush(module.params, check_mode=module.check_mode)
    except RedisError as exc:
        module.fail_json(msg="cache flush failed: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
