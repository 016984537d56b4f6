"""Reading log files from an offset and from their end, whole or as a task's span."""

from __future__ import annotations

import os
from pathlib import Path

from spindle.runs.logs import MAX_CHUNK, read_range, read_tail


def test_read_range_follows_a_growing_file(tmp_path: Path) -> None:
    log = tmp_path / "stdout"
    assert read_range(log, base=0, end=None, offset=0, limit=100).data == b""  # not yet there
    log.write_bytes(b"hello ")
    first = read_range(log, base=0, end=None, offset=0, limit=100)
    assert (first.data, first.start, first.next_offset) == (b"hello ", 0, 6)
    with log.open("ab") as fh:
        fh.write(b"world")
    second = read_range(log, base=0, end=None, offset=first.next_offset, limit=3)
    assert (second.data, second.next_offset) == (b"wor", 9)
    past = read_range(log, base=0, end=None, offset=50, limit=100)
    assert (past.data, past.next_offset) == (b"", 50)


def test_read_range_of_a_span_counts_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "stderr"
    log.write_bytes(b"0123456789abcdef")
    chunk = read_range(log, base=4, end=10, offset=0, limit=100)
    assert (chunk.data, chunk.next_offset) == (b"456789", 6)
    chunk = read_range(log, base=4, end=10, offset=4, limit=100)
    assert (chunk.data, chunk.next_offset) == (b"89", 6)
    assert read_range(log, base=4, end=10, offset=6, limit=100).data == b""


def test_read_range_never_returns_more_than_a_chunk(tmp_path: Path) -> None:
    log = tmp_path / "big"
    log.write_bytes(b"x" * (MAX_CHUNK + 10))
    assert len(read_range(log, base=0, end=None, offset=0, limit=MAX_CHUNK * 2).data) == MAX_CHUNK


def test_read_tail(tmp_path: Path) -> None:
    log = tmp_path / "stdout"
    assert read_tail(log, base=0, end=None, max_bytes=4).data == b""
    log.write_bytes(b"0123456789")
    tail = read_tail(log, base=0, end=None, max_bytes=4)
    assert (tail.data, tail.start, tail.next_offset) == (b"6789", 6, 10)
    whole = read_tail(log, base=0, end=None, max_bytes=100)
    assert (whole.data, whole.start) == (b"0123456789", 0)
    span = read_tail(log, base=2, end=8, max_bytes=3)
    assert (span.data, span.start, span.next_offset) == (b"567", 3, 6)


def test_a_log_replaced_by_a_link_out_of_the_run_reads_as_empty(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    secret = tmp_path / "other-run-log"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    log = run / "logs" / "stdout"
    log.symlink_to(secret)
    assert read_range(log, base=0, end=None, offset=0, limit=100, root=run).data == b""
    assert read_tail(log, base=0, end=None, max_bytes=100, root=run).data == b""
    # a link that stays inside the run folder is still read
    (run / "work").mkdir()
    (run / "work" / "x.log").write_bytes(b"inside")
    log.unlink()
    log.symlink_to(run / "work" / "x.log")
    assert read_tail(log, base=0, end=None, max_bytes=100, root=run).data == b"inside"


def test_a_log_replaced_by_a_fifo_reads_as_empty_without_blocking(tmp_path: Path) -> None:
    log = tmp_path / "stdout"
    os.mkfifo(log)
    assert read_range(log, base=0, end=None, offset=0, limit=100, root=tmp_path).data == b""
