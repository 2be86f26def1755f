"""runbook.ops.redis_flush: its RESP client and flush logic against a small in-process server that keeps keys in
dicts (the real Redis of the lab is exercised in tests/integration/test_cache.py)."""

from __future__ import annotations

import fnmatch
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opsmodule import load

mod = load("redis_flush")


def encode(value: Any) -> bytes:
    if isinstance(value, Exception):
        return b"-ERR " + str(value).encode() + b"\r\n"
    if isinstance(value, bool) or value == "OK":
        return b"+OK\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    raise TypeError(value)


class FakeRedis(socketserver.StreamRequestHandler):
    """SELECT, DBSIZE, FLUSHDB, FLUSHALL, SCAN (cursor = offset), UNLINK/DEL, AUTH - what the module sends."""

    def read_command(self) -> list[bytes] | None:
        line = self.rfile.readline()
        if not line:
            return None
        assert line.startswith(b"*"), line
        args = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])
            args.append(self.rfile.read(size + 2)[:-2])
        return args

    def handle(self) -> None:
        server: Any = self.server
        db = 0
        while (args := self.read_command()) is not None:
            name = args[0].upper().decode()
            server.log.append([a.decode() for a in args])
            keys: dict[bytes, bytes] = server.dbs.setdefault(db, {})
            reply: Any
            if name == "AUTH":
                reply = True if args[-1] == server.password else Exception("invalid password")
            elif server.password and not any(c[0] == "AUTH" for c in server.log):
                reply = Exception("NOAUTH Authentication required.")
            elif name == "SELECT":
                db, reply = int(args[1]), True
            elif name == "DBSIZE":
                reply = len(keys)
            elif name == "FLUSHDB":
                keys.clear()
                reply = True
            elif name == "FLUSHALL":
                server.dbs.clear()
                reply = True
            elif name == "SCAN":
                cursor, pattern, count = int(args[1]), args[3].decode(), int(args[5])
                names = sorted(keys)
                page = names[cursor : cursor + count]
                nxt = cursor + count if cursor + count < len(names) else 0
                reply = [str(nxt).encode(), [k for k in page if fnmatch.fnmatchcase(k.decode(), pattern)]]
            elif name in ("UNLINK", "DEL"):
                reply = sum(1 for k in args[1:] if keys.pop(k, None) is not None)
            else:
                reply = Exception("unknown command " + name)
            self.wfile.write(encode(reply))


@pytest.fixture
def server() -> Iterator[Any]:
    srv: Any = socketserver.ThreadingTCPServer(("127.0.0.1", 0), FakeRedis)
    srv.daemon_threads = True
    srv.dbs, srv.log, srv.password = {}, [], b""
    srv.dbs[0] = {f"catalog:{i}".encode(): b"x" for i in range(2500)} | {
        f"session:{i}".encode(): b"u" for i in range(7)
    }
    srv.dbs[1] = {b"other": b"y"}
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def params(server: Any, **over: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.server_address[1], "batch": 1000, **over}


def test_pattern_removes_only_matching_keys_in_batches(server: Any) -> None:
    result = mod.flush(params(server, pattern="catalog:*"))
    assert (result["keys_before"], result["removed"], result["keys_after"]) == (2500, 2500, 0)
    assert result["changed"] is True
    assert sorted(server.dbs[0]) == sorted(f"session:{i}".encode() for i in range(7))
    assert server.dbs[1] == {b"other": b"y"}
    unlinks = [c for c in server.log if c[0] == "UNLINK"]
    assert len(unlinks) >= 3 and max(len(c) - 1 for c in unlinks) <= 1000
    assert not [c for c in server.log if c[0] in ("KEYS", "FLUSHDB", "FLUSHALL")]


def test_whole_database_and_check_mode(server: Any) -> None:
    dry = mod.flush(params(server), check_mode=True)
    assert dry["keys_before"] == 2507 and dry["msg"].startswith("would flush") and len(server.dbs[0]) == 2507
    done = mod.flush(params(server, async_free=True))
    assert (done["keys_before"], done["keys_after"]) == (2507, 0)
    assert ["FLUSHDB", "ASYNC"] in server.log
    assert server.dbs[1] == {b"other": b"y"}
    assert done["changed"] is True
    again = mod.flush(params(server))  # an empty database: flushed again, and nothing changed
    assert (again["keys_before"], again["keys_after"], again["changed"]) == (0, 0, False)


def test_password_goes_over_the_connection_and_errors_are_reported(server: Any) -> None:
    server.password = b"s3cret"
    with pytest.raises(mod.RedisError, match="NOAUTH"):
        mod.flush(params(server))
    server.log.clear()
    result = mod.flush(params(server, password="s3cret", db=1))
    assert result["keys_before"] == 1 and server.log[0] == ["AUTH", "s3cret"]


def test_refusals_and_connection_errors(server: Any) -> None:
    with pytest.raises(mod.RedisError, match="takes no pattern"):
        mod.flush(params(server, pattern="x*", all_databases=True))
    with pytest.raises(mod.RedisError, match="cannot connect"):
        mod.flush({"host": "127.0.0.1", "port": 1, "timeout": 2})
