"""Promise: `train-selector --scores` gets the same checks as `select --scores` (one row per id, numbers where
scores belong): a table with a repeated id used to be read as it was (the id's last row silently winning), and
text scores went on to training."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hardening.conftest import rec, write_jsonl


@pytest.mark.parametrize("hostile, says", [("repeated id", "ids have more than one row"),
                                           ("text scores", "column 'length' is string, not scores")])
def test_a_hostile_table_is_one_line_before_any_training(tmp_path, cli, hostile, says):
    src = write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(6)])
    assert cli("score", src, "--out", tmp_path / "s.parquet", "--metrics", "length", "--workers", "0")[0] == 0
    t = pq.read_table(tmp_path / "s.parquet")
    vectors = pa.array(np.random.default_rng(0).normal(size=(6, 4)).tolist(), pa.list_(pa.float32()))
    t = t.append_column("embed-image", vectors).append_column("embed-text", vectors)
    if hostile == "repeated id":
        t = pa.concat_tables([t, t.slice(2, 1)])
    else:
        t = t.set_column(t.column_names.index("length"), "length", pa.array([str(i) for i in range(6)]))
    pq.write_table(t, tmp_path / "bad.parquet")
    rc, _, err = cli("train-selector", "--data", src, "--scores", tmp_path / "bad.parquet", "--eval-data", src,
                     "--base-model", "none", "--out", tmp_path / "sel", "--metrics", "length")
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "sel" / "labels.json").exists()
