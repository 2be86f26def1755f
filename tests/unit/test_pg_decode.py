"""pg_decode: the chunked COPY row counter and the follower that decodes a directory dump while it is written."""

from __future__ import annotations

import gzip
import io
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

COLLECTIONS = Path(__file__).resolve().parents[2] / "runner" / "collections"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.runbook.ops.plugins.module_utils import pg_decode  # noqa: E402

SCRIPT = b"""--
-- PostgreSQL database dump
--
CREATE FUNCTION public.f() RETURNS void LANGUAGE sql AS $$
COPY public.fake (a) FROM stdin;
$$;

--
-- Data for Name: orders; Type: TABLE DATA; Schema: public; Owner: lab
--

COPY public.orders (id, customer) FROM stdin;
1\tcustomer-001
2\tline with an escaped\\nnewline
3\t\\\\.
\\.


--
-- Data for Name: Weird Name; Type: TABLE DATA; Schema: My Schema; Owner: lab
--

COPY "My Schema"."Weird Name" (id) FROM stdin;
\\.


--
-- Data for Name: wallet; Type: TABLE DATA; Schema: public; Owner: lab
--

COPY public.wallet (id, owner, balance_cents) FROM stdin;
1\tcustomer-001\t5
\\.
"""
EXPECTED = {"public.orders": 3, '"My Schema"."Weird Name"': 0, "public.wallet": 1}


def _feed(chunks: list[bytes]) -> dict[str, int]:
    counter = pg_decode.CopyRowCounter()
    for chunk in chunks:
        counter.feed(chunk)
    return counter.close()  # type: ignore[no-any-return]


def test_rows_are_counted_per_table_whatever_the_chunk_size() -> None:
    for size in (1, 2, 3, 5, 7, 64, len(SCRIPT)):
        chunks = [SCRIPT[i : i + size] for i in range(0, len(SCRIPT), size)]
        assert _feed(chunks) == EXPECTED, size


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SCRIPT)), max_size=12))
@settings(max_examples=300, deadline=None)
def test_any_split_of_the_stream_counts_the_same(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [SCRIPT[a:b] for a, b in zip([0, *points], [*points, len(SCRIPT)], strict=True)]
    assert _feed(chunks) == EXPECTED


def test_a_stream_ending_inside_copy_data_is_refused() -> None:
    cut = SCRIPT[: SCRIPT.index(b"2\tline")]
    with pytest.raises(pg_decode.DecodeError, match="ends in the middle of its rows"):
        _feed([cut])


def test_a_million_rows_are_counted_without_line_by_line_python() -> None:
    rows = b"".join(b"%d\tfiller\n" % i for i in range(1_000_000))
    script = b"-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: lab\n\nCOPY public.t (a, b) FROM stdin;\n"
    counts = pg_decode.count_copy_rows(io.BytesIO(script + rows + b"\\.\n"))
    assert counts == {"public.t": 1_000_000}


# ------------------------------------------------------------------------------------------- the follower

END = b"\\.\n\n\n"  # how pg_dump ends the data file of a table in directory format


def _table_data(rows: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return b"".join(b"%d\t%s\n" % (i, os.urandom(rng.randint(1, 40)).hex().encode()) for i in range(rows)) + END


def _write_slowly(path: Path, payload: bytes, pieces: int, pause_s: float) -> None:
    """Write like a pg_dump worker: a gzip stream appended piece by piece, flushed as it goes."""
    compressed = gzip.compress(payload)
    step = max(1, len(compressed) // pieces)
    with open(path, "wb") as handle:
        for i in range(0, len(compressed), step):
            handle.write(compressed[i : i + step])
            handle.flush()
            time.sleep(pause_s)


def test_the_follower_decodes_files_while_they_are_written(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(pg_decode, "_yield_cpu", lambda: None)  # a busy machine must not starve this check
    dump = tmp_path / "db.dir.partial"
    tables = {3001: _table_data(20_000, 1), 3002: _table_data(0), 3003: _table_data(777, 3)}
    follower = pg_decode.DirectoryFollower(str(dump), poll_s=0.005).start()
    dump.mkdir()
    writers = [
        threading.Thread(target=_write_slowly, args=(dump / f"{dump_id}.dat.gz", data, 25, 0.004))
        for dump_id, data in tables.items()
    ]
    for writer in writers:
        writer.start()
    time.sleep(0.03)
    assert any(d.offset > 0 for d in follower.files.values()), "nothing read while the files were written"
    for writer in writers:
        writer.join()
    (dump / "toc.dat").write_bytes(b"PGDMP")
    files = follower.finish()
    rows = {name: decoder.rows() for name, decoder in files.items()}
    assert rows == {"3001.dat.gz": 20_000, "3002.dat.gz": 0, "3003.dat.gz": 777}
    assert all(decoder.done for decoder in files.values())


def test_the_follower_runs_on_idle_cpu_only_until_it_is_stopped(tmp_path: Path) -> None:
    follower = pg_decode.DirectoryFollower(str(tmp_path), poll_s=0.005).start()
    deadline = time.monotonic() + 10
    while follower._tid is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert follower._tid is not None
    assert os.sched_getscheduler(follower._tid) == os.SCHED_IDLE
    follower.finish()
    assert not follower._thread.is_alive()


def test_a_truncated_gzip_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "4001.dat.gz").write_bytes(gzip.compress(_table_data(5000))[:-40])
    follower = pg_decode.DirectoryFollower(str(tmp_path)).start()
    with pytest.raises(pg_decode.DecodeError, match=r"truncated|does not decompress"):
        follower.finish()


def test_a_flipped_byte_fails_the_gzip_check(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(_table_data(5000)))
    data[len(data) // 2] ^= 0x40
    (tmp_path / "4002.dat.gz").write_bytes(bytes(data))
    follower = pg_decode.DirectoryFollower(str(tmp_path)).start()
    with pytest.raises(pg_decode.DecodeError, match=r"does not decompress|truncated"):
        follower.finish()


def test_bytes_after_the_gzip_stream_are_refused(tmp_path: Path) -> None:
    (tmp_path / "4003.dat.gz").write_bytes(gzip.compress(_table_data(10)) + b"garbage")
    with pytest.raises(pg_decode.DecodeError, match=r"does not decompress|after the end"):
        pg_decode.DirectoryFollower(str(tmp_path)).start().finish()


def test_uncompressed_data_files_are_counted_too(tmp_path: Path) -> None:
    (tmp_path / "5001.dat").write_bytes(_table_data(42))
    files = pg_decode.DirectoryFollower(str(tmp_path)).start().finish()
    assert files["5001.dat"].rows() == 42


def test_files_map_to_tables_through_the_toc(tmp_path: Path, monkeypatch: Any) -> None:
    for dump_id, rows in ((10, 3), (11, 0)):
        (tmp_path / f"{dump_id}.dat.gz").write_bytes(gzip.compress(_table_data(rows)))
    files = pg_decode.DirectoryFollower(str(tmp_path)).start().finish()
    monkeypatch.setattr(
        pg_decode, "toc_table_data", lambda path, bin_dir="": [(10, "public", "orders"), (11, "My Schema", "T")]
    )
    assert pg_decode.followed_tables(str(tmp_path), files) == {"public.orders": 3, '"My Schema"."T"': 0}
    monkeypatch.setattr(pg_decode, "toc_table_data", lambda path, bin_dir="": [(12, "public", "lost")])
    with pytest.raises(pg_decode.DecodeError, match=r"public\.lost \(12\.dat\) is missing"):
        pg_decode.followed_tables(str(tmp_path), files)
    monkeypatch.setattr(pg_decode, "toc_table_data", lambda path, bin_dir="": None)
    assert pg_decode.followed_tables(str(tmp_path), files) is None  # ambiguous TOC: pg_restore decodes instead


def test_the_toc_listing_is_parsed_and_names_with_spaces_fall_back(tmp_path: Path, monkeypatch: Any) -> None:
    listing = (
        ";\n; Archive created at 2026-11-23\n"
        "3356; 0 16387 TABLE DATA public orders lab\n"
        "3358; 0 16398 TABLE DATA public wallet lab\n"
        "3100; 1259 16386 TABLE public orders lab\n"
    )

    class Done:
        returncode = 0

        def communicate(self) -> tuple[bytes, bytes]:
            return listing.encode(), b""

    monkeypatch.setattr(pg_decode.subprocess, "Popen", lambda *a, **k: Done())
    assert pg_decode.toc_table_data("x") == [(3356, "public", "orders"), (3358, "public", "wallet")]
    listing += "3360; 0 16400 TABLE DATA public my table lab\n"
    assert pg_decode.toc_table_data("x") is None


def test_names_with_spaces_are_told_apart_by_the_tables_the_archive_holds(monkeypatch: Any) -> None:
    listing = (
        "3356; 0 16387 TABLE DATA Sales & Co Order Lines lab\n"
        "3357; 0 16390 TABLE DATA public parent the owner\n"
        "3358; 0 16398 TABLE DATA public wallet lab\n"
    )

    class Done:
        returncode = 0

        def communicate(self) -> tuple[bytes, bytes]:
            return listing.encode(), b""

    monkeypatch.setattr(pg_decode.subprocess, "Popen", lambda *a, **k: Done())
    known = {'"Sales & Co"."Order Lines"', "public.parent", "public.wallet"}
    assert pg_decode.toc_table_data("x", known=known) == [
        (3356, "Sales & Co", "Order Lines"),
        (3357, "public", "parent"),
        (3358, "public", "wallet"),
    ]
    assert pg_decode.toc_table_data("x", known=known - {"public.parent"}) is None  # nothing names that line
    listing += "3359; 0 16400 TABLE DATA a b c lab\n"  # schema "a b" table c, or schema a table "b c"?
    assert pg_decode.toc_table_data("x", known=known | {'"a b".c', 'a."b c"'}) is None
    assert pg_decode.toc_table_data("x", known=known | {'a."b c"'})[-1] == (3359, "a", "b c")


def test_zlib_multi_member_streams_are_read_to_the_end(tmp_path: Path) -> None:
    body = _table_data(100)
    half = len(body) // 2
    (tmp_path / "6001.dat.gz").write_bytes(gzip.compress(body[:half]) + gzip.compress(body[half:]))
    files = pg_decode.DirectoryFollower(str(tmp_path)).start().finish()
    assert files["6001.dat.gz"].rows() == 100
