"""What an input spec names: hf:// through the offline HF cache (and, uncached, a one-line error that says how to
get it), save_to_disk folders, DatasetDicts, globs and brace patterns, and the multi-file score-table fingerprint."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from selector.core.errors import FormatError
from selector.core.sources import resolve_source
from tests.fixtures.formats import cauldron_dataset, onevision_rows, write_onevision


def test_uncached_hub_dataset_says_how_to_download_it(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = cli("select", "hf://datasets/some-org/not-cached@v1/cfg:validation", "--out", tmp_path / "o.parquet",
                     "--budget", "2")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "some-org/not-cached" in err and "config cfg" in err and "split validation" in err
    assert "save_to_disk" in err and "huggingface-cli download --repo-type dataset some-org/not-cached" in err
    rc, _, err = cli("score", "hf://datasets/bad", "--out", tmp_path / "s.parquet", "--no-cache")
    assert rc == 2 and "hf://datasets/ORG/NAME" in err


def test_save_to_disk_folders_and_dataset_dicts(tmp_path, cli):
    import datasets

    ds = cauldron_dataset(4)
    ds.save_to_disk(str(tmp_path / "one"))
    source = resolve_source(tmp_path / "one")
    assert source.kind == "arrow" and [f.name for f in source.files] == ["data-00000-of-00001.arrow"]
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dict"))
    rc, _, err = cli("select", tmp_path / "dict", "--out", tmp_path / "o.parquet", "--budget", "1")
    assert rc == 2 and "DatasetDict" in err and "dict/train" in err
    rc, out, err = cli("select", tmp_path / "dict" / "train", "--out", tmp_path / "o.parquet", "--budget", "2")
    assert rc == 0 and "read 4, rejected 0, selected 2" in out


def test_patterns_name_shards_in_a_fixed_order(tmp_path):
    for s in (2, 0, 1):
        write_onevision(tmp_path / f"part-{s}.parquet", onevision_rows(3, start=10 * s))
    by_glob = resolve_source(f"{tmp_path}/part-*.parquet")
    by_brace = resolve_source(f"{tmp_path}/part-{{2,0}}.parquet")
    assert [f.name for f in by_glob.files] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert [f.name for f in by_brace.files] == ["part-2.parquet", "part-0.parquet"]  # as written
    with pytest.raises(FormatError, match="part-7.parquet does not exist"):
        resolve_source(f"{tmp_path}/part-{{0,7}}.parquet")
    with pytest.raises(FormatError, match="matches no file"):
        resolve_source(f"{tmp_path}/none-*.parquet")


def test_scores_of_a_sharded_input_are_tied_to_its_shards(tmp_path, cli):
    for s in range(2):
        write_onevision(tmp_path / "shards" / f"p{s}.parquet", onevision_rows(5, start=5 * s))
    assert cli("score", tmp_path / "shards", "--out", tmp_path / "s.parquet", "--metrics", "length", "--no-cache")[0] == 0
    assert pq.read_table(tmp_path / "s.parquet").column("id").to_pylist() == [f"ov-{i}" for i in range(10)]
    rc, _, err = cli("select", tmp_path / "shards", "--out", tmp_path / "o.parquet", "--budget", "3",
                     "--scores", tmp_path / "s.parquet")
    assert rc == 0, err
    write_onevision(tmp_path / "shards" / "p1.parquet", onevision_rows(5, start=50))
    rc, _, err = cli("select", tmp_path / "shards", "--out", tmp_path / "o.parquet", "--budget", "3",
                     "--scores", tmp_path / "s.parquet")
    assert rc == 2 and "computed from another input" in err
