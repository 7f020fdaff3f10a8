"""Promise: a WebDataset shard that is not a tar at all (a gzip-compressed tar named .tar, an HTML error page
saved as a shard) stops the run with one line saying so; before, its samples vanished from the count (read 0,
exit 0) and a folder with one such shard lost it without a word (found by the hostile-input sweep)."""
from __future__ import annotations

import gzip
import tarfile

import pytest

from tests.fixtures.formats import wds_sample, write_shard


@pytest.mark.parametrize("kind", ["gzip", "html"])
def test_a_shard_that_is_not_a_tar_is_one_line(tmp_path, cli, kind):
    good = write_shard(tmp_path / "shards" / "a.tar", [(f"k{i}", wds_sample(f"k{i}", i)) for i in range(3)])
    bad = tmp_path / "shards" / "b.tar"
    bad.write_bytes(gzip.compress(good.read_bytes()) if kind == "gzip" else b"<html>404 Not Found</html>" * 40)
    rc, out, err = cli("select", tmp_path / "shards", "--out", tmp_path / "o.tar", "--budget", "1")
    assert rc == 2 and "b.tar: not a readable tar shard" in err and len(err.strip().splitlines()) == 1, (out, err)
    assert ("gzip-compressed" in err) == (kind == "gzip")


def test_an_empty_shard_holds_no_samples(tmp_path, cli):
    write_shard(tmp_path / "shards" / "a.tar", [(f"k{i}", wds_sample(f"k{i}", i)) for i in range(3)])
    (tmp_path / "shards" / "b.tar").write_bytes(b"")
    rc, out, err = cli("select", tmp_path / "shards", "--out", tmp_path / "o.tar", "--budget", "1")
    assert rc == 0 and "read 3, rejected 0, selected 1, not selected 2" in out, err
    assert len(tarfile.open(tmp_path / "o.tar").getnames()) == 2
