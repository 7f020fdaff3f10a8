"""Promise: the judge's SQLite response cache can be shared by several processes (workers, Ray actors) writing at
once without losing a reply or failing with "database is locked"; a cache that cannot be used is a miss, or (a
damaged file) one line with a hint, never a traceback in the middle of a run."""
from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from metrics.judge_client import ResponseCache
from selector.core.errors import MmselectError


def _writer(path: str, tag: str, n: int) -> None:
    cache = ResponseCache(path)
    for i in range(n):
        cache.put(f"{tag}-{i}", f"reply {tag} {i}")
        assert cache.get(f"{tag}-{i}") == f"reply {tag} {i}"
    cache.close()


def test_two_processes_writing_at_once_keep_every_reply(tmp_path):
    path = str(tmp_path / "judge.sqlite")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, tag, 150)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = ResponseCache(path)
    assert cache.get("a-149") == "reply a 149" and cache.get("b-0") == "reply b 0"
    assert cache._db.execute("SELECT count(*) FROM replies").fetchone()[0] == 300
    assert cache._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_lock_held_past_the_timeout_is_a_miss_not_a_crash(tmp_path, monkeypatch, caplog):
    path = str(tmp_path / "judge.sqlite")
    cache = ResponseCache(path)
    monkeypatch.setattr(ResponseCache, "BUSY_TIMEOUT", 0.05)
    blocked = ResponseCache(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    try:
        blocked.put("k", "v")  # used to raise sqlite3.OperationalError: database is locked
    finally:
        holder.execute("ROLLBACK")
    assert "going on without it" in caplog.text
    blocked.put("k", "v")
    assert cache.get("k") == "v"


def test_a_damaged_cache_file_is_one_line_with_a_hint(tmp_path):
    path = tmp_path / "judge.sqlite"
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(MmselectError, match="delete it .*--no-cache"):
        ResponseCache(path)
