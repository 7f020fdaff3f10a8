"""Promise: an input spec that names too much or nothing at all is one line, at once: a brace pattern of a hundred
billion shards is refused before it is expanded (braceexpand builds every range whole: 10 million names took 16 s
and gigabytes), found by the hostile-input sweep."""
from __future__ import annotations

import time

import pytest


@pytest.mark.timeout(60)
def test_a_brace_pattern_of_too_many_shards_is_one_line_at_once(tmp_path, cli):
    start = time.monotonic()
    rc, _, err = cli("select", str(tmp_path / "s-{0..99999999999}.tar"), "--out", tmp_path / "o.tar", "--budget", "1")
    assert rc == 2 and "expands to 100,000,000,000 names" in err and len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - start < 10


def test_a_saved_dataset_of_zero_rows_is_one_line(tmp_path, cli, capsys):
    """`datasets` saves an empty dataset without any Arrow file; the reader used to index the missing first file."""
    import datasets

    datasets.Dataset.from_dict({"id": [], "conversations": []}).save_to_disk(str(tmp_path / "ds"))
    capsys.readouterr()  # the saving progress bar
    for command, extra in (("select", ("--budget", "1")), ("score", ())):
        rc, _, err = cli(command, tmp_path / "ds", "--out", tmp_path / "o.parquet", *extra)
        assert rc == 2 and "has no rows" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("n", [2, 3])
def test_more_clusters_than_records_still_selects(tmp_path, cli, n):
    """`--group-by cluster:50` on a handful of records: SpectralClustering with as many clusters as rows raised a
    scipy TypeError; fewer clusters (or one group) is the answer."""
    from tests.hardening.conftest import rec, write_jsonl

    src = write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(n)])
    rc, out, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "1", "--group-by", "cluster:50",
                       "--workers", "0")
    assert rc == 0 and f"read {n}, rejected 0, selected 1" in out, err
