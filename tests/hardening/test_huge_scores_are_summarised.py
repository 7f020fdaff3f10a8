"""Promise: finite but huge scores (near +-1.8e308) are summarised and drawn right, without a numpy warning, and a
column of one huge value does not crash the report (its histogram edges used to collapse and step back)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.app.report.stats import bin_edges, histogram, summarise
from tests.hardening.conftest import rec, write_jsonl

BIG = np.finfo(np.float64).max


@pytest.mark.filterwarnings("error")
def test_mean_and_std_of_huge_values():
    s = summarise("x", np.array([1e308, -1e308, 1.7e308, np.nan]))
    assert s.mean == pytest.approx(1.7e308 / 3) and s.std == pytest.approx(np.std([1.0, -1.0, 1.7]) * 1e308)
    assert (s.min, s.max, s.missing) == (-1e308, 1.7e308, 1) and s.median == pytest.approx(1e308)
    assert -1e308 <= s.p05 < s.median < s.p95 <= 1.7e308
    assert summarise("x", np.array([1.0, 2.0, 3.0])).mean == 2.0  # ordinary values: the plain mean


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("values", [np.full(9, 1.7e308), np.full(9, -BIG), np.full(9, 1e20), np.array([-BIG, BIG])])
def test_histogram_edges_always_increase(values):
    edges = bin_edges(values)
    assert np.all(np.isfinite(edges)) and np.all(np.diff(edges) >= 0) and edges[0] < edges[-1]
    assert histogram(values, edges).sum() == len(values)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("column", ["constant", "spread"])
def test_analyze_a_table_of_huge_scores(tmp_path, cli, column):
    src = write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(20)])
    assert cli("score", src, "--out", tmp_path / "s.parquet", "--metrics", "length", "--workers", "0")[0] == 0
    t = pq.read_table(tmp_path / "s.parquet")
    values = np.full(20, 1.7e308) if column == "constant" else np.linspace(-1.0, 1.0, 20) * 1.7e308
    pq.write_table(t.set_column(t.schema.get_field_index("length"), "length", pa.array(values)),
                   tmp_path / "huge.parquet")
    rc, _, err = cli("analyze", src, "--scores", tmp_path / "huge.parquet", "--out", tmp_path / "page")
    assert rc == 0 and "Traceback" not in err and (tmp_path / "page" / "index.html").exists(), err
