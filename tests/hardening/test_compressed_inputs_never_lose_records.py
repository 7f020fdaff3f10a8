"""Promise: a compressed input (gzip, zstd, bzip2, xz) is read whole or not at all. A stream cut short or followed
by garbage stops the run in one line saying where; concatenated streams (`cat a.gz b.gz`, pzstd's frames) are all
read. It used to keep what decoded before a cut (a cut zstd block: nothing, silently), read only the first zstd
frame, and take bzip2 / xz files for 'not a JSON or JSONL instruction file'."""
from __future__ import annotations

import bz2
import gzip
import lzma

import pytest
import zstandard

from tests.hardening.conftest import rec, write_jsonl

PACK = {"gz": gzip.compress, "zst": lambda b: zstandard.ZstdCompressor().compress(b), "bz2": bz2.compress,
        "xz": lzma.compress}


@pytest.fixture
def plain(tmp_path):
    return write_jsonl(tmp_path / "plain.jsonl", [rec(i) for i in range(30)]).read_bytes()


def _select(cli, tmp_path, src):
    return cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "3")


@pytest.mark.parametrize("kind", list(PACK))
def test_a_whole_file_and_concatenated_streams_are_read_in_full(tmp_path, cli, plain, kind):
    half = plain.index(b"\n", len(plain) // 2) + 1
    (tmp_path / f"one.jsonl.{kind}").write_bytes(PACK[kind](plain))
    (tmp_path / f"two.jsonl.{kind}").write_bytes(PACK[kind](plain[:half]) + PACK[kind](plain[half:]))
    for name in ("one", "two"):
        rc, out, err = _select(cli, tmp_path, tmp_path / f"{name}.jsonl.{kind}")
        assert rc == 0 and "read 30, rejected 0" in out, (name, out, err)


@pytest.mark.parametrize("kind", list(PACK))
@pytest.mark.parametrize("cut", ["middle", "last byte"])
def test_a_cut_stream_stops_the_run_in_one_line(tmp_path, cli, plain, kind, cut):
    packed = PACK[kind](plain)
    src = tmp_path / f"d.jsonl.{kind}"
    src.write_bytes(packed[: len(packed) // 2] if cut == "middle" else packed[:-1])
    rc, _, err = _select(cli, tmp_path, src)
    assert rc == 2 and "ends early" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("kind", list(PACK))
def test_garbage_after_the_stream_stops_the_run(tmp_path, cli, plain, kind):
    src = tmp_path / f"d.jsonl.{kind}"
    src.write_bytes(PACK[kind](plain) + b"this is not compressed data at all")
    rc, _, err = _select(cli, tmp_path, src)
    assert rc == 2 and "corrupt" in err and len(err.strip().splitlines()) == 1, err
