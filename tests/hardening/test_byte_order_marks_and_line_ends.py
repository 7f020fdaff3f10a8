"""Promise: a UTF-8 byte-order mark (Windows editors write one) or CRLF line ends change nothing: every record is
read, and the mark is never copied into an output (it used to travel with the first record's bytes, landing in
the middle of a selection; a JSON list with a mark was refused as 'not a JSON or JSONL instruction file')."""
from __future__ import annotations

import json

import orjson
import pytest

from tests.hardening.conftest import rec

BOM = b"\xef\xbb\xbf"


def _records(n=6):
    return [rec(i, answer="word " * (n - i)) for i in range(n)]  # r0 scores highest: it is not written first


@pytest.mark.parametrize("layout", ["jsonl", "json", "json-indented"])
@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
def test_a_byte_order_mark_is_read_past_and_never_copied(tmp_path, cli, layout, end):
    rows = _records()
    if layout == "jsonl":
        body = b"".join(json.dumps(r).encode() + end for r in rows)
    else:
        body = json.dumps(rows, indent=1 if layout == "json-indented" else None).encode().replace(b"\n", end)
    src = tmp_path / f"d.{'jsonl' if layout == 'jsonl' else 'json'}"
    src.write_bytes(BOM + body)
    rc, out, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "4", "--metrics", "length")
    assert rc == 0 and "read 6, rejected 0" in out, err
    written = (tmp_path / "o.jsonl").read_bytes()
    assert BOM not in written
    rows = orjson.loads(written) if layout != "jsonl" else [orjson.loads(line) for line in written.splitlines()]
    ids = [r["id"] for r in rows]
    assert len(ids) == 4 and "r0" in ids


def test_several_jsonl_files_named_by_a_pattern_get_a_hint_not_mixed_kinds(tmp_path, cli):
    for k in range(2):
        (tmp_path / f"sh-{k}.jsonl").write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in _records(3)))
    rc, _, err = cli("select", f"{tmp_path}/sh-{{0..1}}.jsonl", "--out", tmp_path / "o.jsonl", "--budget", "2")
    assert rc == 2 and "join the shards first" in err and "mixes file kinds" not in err, err


def test_a_float_id_that_is_nan_is_called_nan_not_null(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from selector.core.records import read_records

    conv = [[{"from": "human", "value": "q"}, {"from": "gpt", "value": f"a{i}"}] for i in range(3)]
    pq.write_table(pa.table({"id": [float("nan"), float("inf"), 2.0], "conversations": conv}), tmp_path / "t.parquet")
    reasons = read_records(tmp_path / "t.parquet", workers=1).table.column("reason").to_pylist()
    assert reasons[:2] == ["id must be a string or an integer, got nan", "id must be a string or an integer, got inf"]
    assert reasons[2] is None


def test_a_byte_order_mark_in_a_tar_samples_json_or_txt(tmp_path):
    import io
    import tarfile

    from PIL import Image

    from selector.core.records import read_records

    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, "PNG")
    with tarfile.open(tmp_path / "s.tar", "w") as tf:
        for name, data in (("a.json", BOM + json.dumps(rec(0)).encode()), ("a.png", image.getvalue()),
                           ("b.txt", BOM + b"a caption"), ("b.png", image.getvalue()),
                           ("c.json", json.dumps(rec(2)).encode()), ("c.png", image.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    rs = read_records(tmp_path / "s.tar", workers=1, check_image_files=False)
    assert rs.table.column("reason").to_pylist() == [None, None, None]
    assert "\ufeff" not in "".join(rs.table.column("answer").to_pylist())
