"""Promise: Parquet shards of different schemas stop the run in one line that says what differs (it only said
'its columns differ'), never a traceback or a silent mix."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _conv(i):
    return [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"answer {i}"}]


@pytest.mark.parametrize("second, says", [
    ({"id": ["c", "d"], "conversations": [_conv(2), _conv(3)], "source": ["x", "y"]}, "an extra column 'source'"),
    ({"id": [3, 4], "conversations": [_conv(2), _conv(3)]}, "column 'id' is int64, not string"),
    ({"conversations": [_conv(2), _conv(3)], "id": ["c", "d"]}, "the same columns in another order"),
    ({"id": ["c", "d"], "texts": ["t", "u"]}, "no column 'conversations'"),
])
def test_mixed_shards_name_the_difference(tmp_path, cli, second, says):
    (tmp_path / "ds").mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "conversations": [_conv(0), _conv(1)]}), tmp_path / "ds" / "p0.parquet")
    pq.write_table(pa.table(second), tmp_path / "ds" / "p1.parquet")
    rc, _, err = cli("select", tmp_path / "ds", "--out", tmp_path / "o.jsonl", "--budget", "2")
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "o.jsonl").exists()
