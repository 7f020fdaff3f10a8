"""Promise: a table or shard whose columns have unexpected Arrow types is read when its values mean what the
reader needs (dictionary-encoded strings, all-null struct fields), and is otherwise one line and exit 2, never a
traceback (found by the hostile-input sweep: odd types that passed the schema check crashed deeper down)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.core.records import read_records
from tests.fixtures.formats import png


def _turns(n: int) -> list:
    return [[{"from": "human", "value": f"<image>\nq {i}"}, {"from": "gpt", "value": f"answer {i}"}] for i in range(n)]


@pytest.mark.parametrize("image", [
    pa.array([{"bytes": i, "path": "a.png"} for i in range(3)]),  # HF Image struct with numbers for bytes
    pa.array([{"bytes": None, "path": i} for i in range(3)], pa.struct([("bytes", pa.binary()), ("path", pa.int64())])),
], ids=["int-bytes", "int-path"])
def test_an_image_struct_of_numbers_is_one_line(tmp_path, cli, image):
    pq.write_table(pa.table({"id": ["a", "b", "c"], "image": image, "conversations": _turns(3)}), tmp_path / "t.parquet")
    rc, _, err = cli("select", tmp_path / "t.parquet", "--out", tmp_path / "o.parquet", "--budget", "1")
    assert rc == 2 and "image column 'image' is struct" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_image_struct_with_an_all_null_path_is_read(tmp_path):
    image = pa.StructArray.from_arrays([pa.array([png(i) for i in range(3)], pa.binary()), pa.nulls(3)],
                                       names=["bytes", "path"])
    pq.write_table(pa.table({"id": ["a", "b", "c"], "image": image, "conversations": _turns(3)}), tmp_path / "t.parquet")
    rs = read_records(tmp_path / "t.parquet", workers=1)
    assert rs.table.column("reason").to_pylist() == [None] * 3
    assert all(len(x) == 1 for x in rs.table.column("images").to_pylist())


def test_dictionary_encoded_columns_are_read_as_their_values(tmp_path, cli):
    """Parquet keeps a dictionary-encoded column so (pandas categoricals, `dictionary_encode()`): its values are
    the strings the reader needs; the output keeps the input's schema."""
    import json

    (tmp_path / "img").mkdir()
    for i in range(4):
        (tmp_path / "img" / f"{i}.png").write_bytes(png(i))
    table = pa.table({"id": pa.array([f"d{i}" for i in range(4)]).dictionary_encode(),
                      "image": pa.array([f"img/{i}.png" for i in range(4)]).dictionary_encode(),
                      "conversations": pa.array([json.dumps(t) for t in _turns(4)]).dictionary_encode(),
                      "data_source": pa.array(["a", "b", "a", "b"]).dictionary_encode()})
    pq.write_table(table, tmp_path / "t.parquet")
    rs = read_records(tmp_path / "t.parquet", workers=1, group_by="data_source")
    assert rs.table.column("reason").to_pylist() == [None] * 4
    assert rs.table.column("id").to_pylist() == ["d0", "d1", "d2", "d3"]
    assert rs.groups.to_pylist() == ["a", "b", "a", "b"]
    rc, out, err = cli("select", tmp_path / "t.parquet", "--out", tmp_path / "o.parquet", "--budget", "2",
                       "--group-by", "data_source")
    assert rc == 0 and "read 4, rejected 0, selected 2, not selected 2" in out, err
    assert pq.read_schema(tmp_path / "o.parquet").equals(pq.read_schema(tmp_path / "t.parquet"))
