# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Full decode of pg_dump archives with row counts per table, on the Python standard library.

Two ways to prove every byte of a dump decodes:

- decode_postgres: pg_restore turns the archive into a script (C(pg_restore -f -)) and the COPY sections of that
  script are counted (CopyRowCounter, which scans chunks with bytes.find/count rather than line by line);
- DirectoryFollower: while C(pg_dump -Fd -j N) is still writing, every C(<dumpId>.dat.gz) file is decompressed
  as it grows (zlib checks each gzip member's CRC-32 and length at its end) and its rows are counted; once
  pg_dump is done, C(pg_restore --list) names the table of each file. The decode then costs almost no wall
  time: it runs on what pg_dump's compression leaves of the CPU, and is finished seconds after the dump.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess
import tempfile
import threading
import time
import zlib

from ansible_collections.runbook.ops.plugins.module_utils.host_work import tracked_popen
from ansible_collections.runbook.ops.plugins.module_utils.pg_common import display_name, parse_qualified, tail

CHUNK = 1024 * 1024
# Compressed bytes per zlib call: small enough that what it inflates to (x50 for pgbench-like data) is still in
# the CPU cache when its newlines are counted - counting, not inflating, is most of the cost.
PIECE = 64 * 1024
COPY_END = b"\\.\n"
DATA_FILE = re.compile(r"^(\d+)\.dat(\.gz)?$")
BLOB_FILE = re.compile(r"^blob_\d+\.dat(\.gz)?$")
# pg_restore --list: "<dumpId>; <tableoid> <oid> TABLE DATA <schema> <name> <owner>"
TOC_TABLE_DATA = re.compile(r"^(\d+); \d+ \d+ TABLE DATA (.*)$")


class DecodeError(Exception):
    """The archive does not decode in full; the message says where and why."""


def _data_header(line):
    """TOC comment before each section of pg_restore's script: '-- Data for Name: ...; Type: TABLE DATA; ...'."""
    return line.startswith(b"-- Data for Name: ") and b"; Type: TABLE DATA;" in line


def copy_table(line):
    """'COPY public.orders (id, x) FROM stdin;' -> 'public.orders' (display form)."""
    text = line.decode("utf-8", "replace").rstrip("\n")
    if not (text.startswith("COPY ") and text.endswith(" FROM stdin;")):
        return None
    body = text[5:-len(" FROM stdin;")]
    # the qualified name ends at the column list ' (' that is outside quotes, or at the end
    i, in_quote = 0, False
    while i < len(body):
        ch = body[i]
        if ch == '"':
            in_quote = not in_quote
        elif ch == " " and not in_quote:
            break
        i += 1
    schema, name = parse_qualified(body[:i])
    return display_name(schema, name)


class CopyRowCounter(object):
    """Row counts per table from a pg_restore plain-text script fed in chunks (one COPY line per row).

    Only a COPY right after a 'TABLE DATA' section header counts, so SQL text that merely looks like COPY (in a
    function body) is not mistaken for data. Inside a COPY section the rows are counted with bytes.count up to
    the end-of-data line, so a gigabyte of rows costs milliseconds of Python."""

    def __init__(self):
        self.tables = {}
        self.current = None
        self.armed = False
        self.pending = b""

    def feed(self, chunk):
        buf = self.pending + chunk if self.pending else chunk
        self.pending = b""
        pos, size = 0, len(buf)
        while pos < size:
            if self.current is None:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    self.pending = buf[pos:]
                    return
                self._header_line(buf[pos:nl + 1])
                pos = nl + 1
                continue
            # pos is at the start of a line inside COPY data
            if buf.startswith(COPY_END, pos):
                self.current = None
                pos += len(COPY_END)
                continue
            end = buf.find(b"\n" + COPY_END, pos)
            if end >= 0:
                self.tables[self.current] += buf.count(b"\n", pos, end + 1)
                self.current = None
                pos = end + 1 + len(COPY_END)
                continue
            last = buf.rfind(b"\n", pos)
            if last < 0:
                self.pending = buf[pos:]
                return
            self.tables[self.current] += buf.count(b"\n", pos, last + 1)
            self.pending = buf[last + 1:]
            return

    def _header_line(self, line):
        if line.startswith(b"-- "):
            if _data_header(line):
                self.armed = True
            elif line.startswith(b"-- Name: "):
                self.armed = False
        elif self.armed and line.startswith(b"COPY "):
            table = copy_table(line)
            if table is not None:
                self.tables.setdefault(table, 0)
                self.current, self.armed = table, False

    def close(self):
        if self.pending and self.current is None:
            self._header_line(self.pending)
            self.pending = b""
        if self.current is not None:
            raise DecodeError("the data of %s ends in the middle of its rows" % self.current)
        return self.tables


def count_copy_rows(stream):
    counter = CopyRowCounter()
    for block in iter(lambda: stream.read(CHUNK), b""):
        counter.feed(block)
    return counter.close()


def pg_restore_tool(bin_dir=""):
    return os.path.join(bin_dir, "pg_restore") if bin_dir else "pg_restore"


def decode_postgres(path, bin_dir=""):
    """Decode every byte of a pg_dump archive (pg_restore to a script, read to the end); row counts per table."""
    env = dict(os.environ, LC_ALL="C")
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = tracked_popen([pg_restore_tool(bin_dir), "-f", "-", path], stdout=subprocess.PIPE,
                                   stderr=errfile, stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise DecodeError("cannot run pg_restore: %s" % exc)
        try:
            tables = count_copy_rows(proc.stdout)
        except DecodeError:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        rc = proc.wait()
        errfile.seek(0)
        err = errfile.read().decode("utf-8", "replace")
    if rc != 0:
        raise DecodeError("pg_restore cannot read %s (exit %d): %s" % (path, rc, tail(err, 4)))
    return tables


class FileDecoder(object):
    """Decompresses (a .gz) or reads (plain) one data file from where it stopped, counting newlines."""

    def __init__(self, path):
        self.path = path
        self.gzip = path.endswith(".gz")
        self.offset = 0
        self.newlines = 0
        self.size_out = 0
        self.tail = b""
        self.done = False  # the gzip stream reached its end (CRC and length checked)
        self._z = zlib.decompressobj(31) if self.gzip else None
        self._handle = None

    def _take(self, data):
        if data:
            self.newlines += data.count(b"\n")
            self.size_out += len(data)
            self.tail = (self.tail + data[-8:])[-8:]

    def _inflate(self, data):
        while data:
            if self._z.eof:
                self._z = zlib.decompressobj(31)  # another gzip member follows (anything else fails to inflate)
            try:
                self._take(self._z.decompress(data))
            except zlib.error as exc:
                raise DecodeError("%s does not decompress: %s" % (self.path, exc))
            data = self._z.unused_data if self._z.eof else b""
        self.done = self._z.eof

    def step(self, limit=4 * CHUNK):
        """Read up to `limit` new bytes; True when something was read."""
        if self._handle is None:
            self._handle = open(self.path, "rb")
        read = 0
        while read < limit:
            data = self._handle.read(PIECE)
            if not data:
                break
            read += len(data)
            self.offset += len(data)
            if self.gzip:
                self._inflate(data)
            else:
                self._take(data)
        return read > 0

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def drain(self):
        while self.step():
            pass
        self.close()
        if self.gzip and not self.done:
            raise DecodeError("%s ends before its gzip stream does (truncated)" % self.path)

    def rows(self):
        """Rows of a finished COPY data file: one line each, then the end-of-data line and two empty lines."""
        if self.tail.endswith(b"\n" + COPY_END + b"\n\n") or (self.size_out == 5 and self.tail.endswith(COPY_END + b"\n\n")):
            return self.newlines - 3
        if self.tail.endswith(b"\n" + COPY_END) or self.size_out == 3 and self.tail == COPY_END:
            return self.newlines - 1
        return None


def _yield_cpu():
    """Run this thread only on CPU time nothing else wants (SCHED_IDLE; nice 19 where that is refused): the
    follower decodes in what pg_dump leaves idle and must not slow the dump down. Linux schedules threads as
    tasks, so only this thread is affected. Returns the thread id, to hand the CPU back with _normal_cpu."""
    tid = getattr(threading, "get_native_id", lambda: None)()
    if tid is None:
        return None
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        except OSError:
            return None
    return tid


def _normal_cpu(tid):
    """Once pg_dump is done the follower's last step must not starve behind a busy host."""
    if tid is None:
        return
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


class DirectoryFollower(object):
    """Decodes the data files of a directory-format dump while pg_dump writes them (a background thread)."""

    def __init__(self, path, poll_s=0.05):
        self.path = path
        self.poll_s = poll_s
        self.files = {}
        self.error = None
        self._stop = threading.Event()
        self._tid = None
        self._thread = threading.Thread(target=self._loop, name="dump-follower")
        self._thread.daemon = True

    def start(self):
        self._thread.start()
        return self

    def _scan(self):
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        for name in names:
            if name not in self.files and (DATA_FILE.match(name) or BLOB_FILE.match(name)):
                self.files[name] = FileDecoder(os.path.join(self.path, name))
        return [d for d in self.files.values() if not d.done]

    def _loop(self):
        self._tid = _yield_cpu()
        try:
            while not self._stop.is_set():
                progressed = False
                for decoder in self._scan():
                    progressed = decoder.step() or progressed
                if not progressed:
                    self._stop.wait(self.poll_s)
        except (DecodeError, OSError) as exc:
            self.error = exc

    def stop(self):
        self._stop.set()
        _normal_cpu(self._tid)
        self._thread.join()

    def finish(self):
        """After pg_dump exited successfully: read what is left of every file; the decoders by file name."""
        self.stop()
        if self.error is not None:
            raise DecodeError(str(self.error))
        for decoder in self._scan():
            decoder.drain()
        for decoder in self.files.values():
            if decoder.gzip and not decoder.done:
                raise DecodeError("%s ends before its gzip stream does (truncated)" % decoder.path)
        return self.files


def toc_names(words, known):
    """(schema, name) of the '<schema> <name> <owner>' words of a TOC line, or None when they are ambiguous.
    pg_restore --list prints names unquoted, so names with spaces are told apart by the tables (display names)
    the caller knows the archive holds: exactly one way of splitting the words must name one of them."""
    if len(words) == 3:
        return words[0], words[1]
    found = set()
    for i in range(1, len(words) - 1):
        for j in range(i + 1, len(words)):
            schema, name = " ".join(words[:i]), " ".join(words[i:j])
            if display_name(schema, name) in known:
                found.add((schema, name))
    return found.pop() if len(found) == 1 else None


def toc_table_data(path, bin_dir="", known=()):
    """(dumpId, schema, name) of every TABLE DATA entry of an archive's TOC, or None when a line is ambiguous
    (see toc_names; `known`: display names of the archive's tables, e.g. from its manifest)."""
    proc = tracked_popen([pg_restore_tool(bin_dir), "--list", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=dict(os.environ, LC_ALL="C"))
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise DecodeError("pg_restore cannot read the TOC of %s (exit %d): %s" % (
            path, proc.returncode, tail(err.decode("utf-8", "replace"), 4)))
    entries = []
    for line in out.decode("utf-8", "replace").splitlines():
        match = TOC_TABLE_DATA.match(line)
        if not match:
            continue
        names = toc_names(match.group(2).split(" "), known)
        if names is None:
            return None
        entries.append((int(match.group(1)),) + names)
    return entries


def followed_tables(path, files, bin_dir=""):
    """Row counts per table of a followed directory dump: every TABLE DATA entry needs a whole data file.
    None when the TOC cannot be mapped unambiguously (then decode with pg_restore instead)."""
    entries = toc_table_data(path, bin_dir)
    if entries is None:
        return None
    by_id = {}
    for name, decoder in files.items():
        match = DATA_FILE.match(name)
        if match:
            by_id[int(match.group(1))] = decoder
    tables = {}
    for dump_id, schema, name in entries:
        decoder = by_id.get(dump_id)
        if decoder is None:
            raise DecodeError("the data of %s.%s (%d.dat) is missing from %s" % (schema, name, dump_id, path))
        rows = decoder.rows()
        if rows is None:
            return None  # not the layout this reader knows: let pg_restore decode it
        tables[display_name(schema, name)] = rows
    return tables


def wait_and_follow(proc, follower, interval_s=0.2):
    """Wait for pg_dump, stopping the follower early when it found a bad file (the dump is killed then)."""
    while proc.poll() is None:
        if follower.error is not None:
            proc.kill()
            proc.wait()
            break
        time.sleep(interval_s)
    return proc.returncode
