"""Promise: a `--scores` table edited by hand or by another tool is used only when it means one score per record:
text where numbers belong, repeated ids or damaged metadata are one line and exit 2; inf and NaN are missing scores
(never the best), and values near float64's limit still make a report. Never a traceback (found by the hostile-
input sweep: each of these stopped `select` or `analyze` with an Arrow, JSON or NumPy error)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hardening.conftest import rec, write_jsonl


@pytest.fixture
def scored(tmp_path, cli):
    """(input, its length score table) for six records r0..r5."""
    src = write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(6)])
    rc, _, err = cli("score", src, "--metrics", "length", "--out", tmp_path / "s.parquet", "--workers", "0")
    assert rc == 0, err
    return src, pq.read_table(tmp_path / "s.parquet")


def _edited(tmp_path, table: pa.Table, name: str, **columns) -> str:
    for col, values in columns.items():
        table = table.set_column(table.column_names.index(col), col, values)
    path = tmp_path / name
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t: {"length": pa.array(["1", "2", "3", "x", "5", ""])}, "column 'length' is string, not scores"),
    (lambda t: {"length": pa.array([{"a": 1.0}] * 6)}, "column 'length' is struct"),
    (lambda t: {"id": pa.array(["r0", "r0", "r1", "r1", "r2", "r2"])}, "3 ids have more than one row"),
    (lambda t: {"id": t.column("id").cast(pa.binary())}, "column id is binary, not record ids"),
], ids=["text", "struct", "repeated-ids", "binary-ids"])
def test_a_table_that_is_not_one_score_per_record_is_one_line(scored, tmp_path, cli, edit, message):
    src, table = scored
    bad = _edited(tmp_path, table, "bad.parquet", **edit(table))
    for args in (("select", src, "--budget", "2", "--out", tmp_path / "o.jsonl"), ("analyze", src, "--out", tmp_path / "a")):
        rc, _, err = cli(*args, "--scores", bad, "--workers", "0")
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_damaged_metadata_is_one_line(scored, tmp_path, cli):
    src, table = scored
    for i, raw in enumerate([b"{not json", b"[1, 2]", b"null"]):
        meta = {k: raw for k in table.schema.metadata}
        path = tmp_path / f"m{i}.parquet"
        pq.write_table(table.replace_schema_metadata(meta), path)
        rc, _, err = cli("select", src, "--budget", "2", "--out", tmp_path / "o.jsonl", "--scores", path, "--workers", "0")
        assert rc == 2 and "metadata" in err and len(err.strip().splitlines()) == 1, err


def test_inf_and_nan_are_missing_and_huge_values_still_report(scored, tmp_path, cli):
    src, table = scored
    inf = _edited(tmp_path, table, "inf.parquet",
                  length=pa.array([float("inf"), 1.0, float("nan"), 3.0, float("-inf"), 2.0]))
    rc, out, err = cli("select", src, "--budget", "2", "--out", tmp_path / "o.jsonl", "--scores", inf, "--workers", "0")
    assert rc == 0, err
    report = json.loads((tmp_path / "o.jsonl.report.json").read_text())
    assert report["selected_ids"] == ["r3", "r5"]  # the finite best, not the inf
    huge = _edited(tmp_path, table, "huge.parquet", length=pa.array([1e308, -1e308, 1e308, 5e307, 1.0, 0.0]))
    rc, out, err = cli("analyze", src, "--out", tmp_path / "a", "--scores", huge, "--workers", "0")
    assert rc == 0 and (tmp_path / "a" / "index.html").is_file(), err
