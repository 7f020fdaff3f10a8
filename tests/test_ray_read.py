"""The Ray engine's sharded JSONL read, without Ray: shard by shard (`metrics.ray_read.read_part`, one task each on a
cluster), then the whole-input checks on what the driver receives, gives read_records' verdicts, lines and ids."""
from __future__ import annotations

import json
import pickle

import pytest

from metrics.ray_read import SCORED, read_part
from selector.core.records import join_jsonl_parts, line_ranges, mark_duplicates, read_records


def _conv(q: str, a: str, **extra) -> str:
    return json.dumps({**extra, "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]})


@pytest.fixture
def tricky(tmp_path):
    lines = [_conv(f"q{i}", f"a{i}", id=f"r{i}", image=f"im{i % 7}.png") for i in range(40)]
    lines[5] = ""  # a blank line is no record
    lines[9] = "{not json"
    lines[12] = _conv("q1", "a1", id="copy-of-r1", image="im1.png")  # same content as r1, another id
    lines[17] = _conv("other", "text", id="r3")  # r3's id again, other content
    lines[21] = _conv("q21", "a")  # no id: line-22
    lines[22] = _conv("q22", "a", id="line-22")  # a string id equal to line 22's automatic id
    lines[30] = _conv("q30", "a", id=7)  # a number id
    lines[33] = _conv("q1", "a1", id="r1b", image="im2.png")  # r1's text, another image: not a duplicate
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("shard_lines", [1, 6, 100])
def test_sharded_read_gives_read_records_verdicts(tricky, shard_lines):
    local = read_records(tricky, images=tricky.parent, check_image_files=False).table
    ranges = line_ranges(tricky, shard_lines)
    parts = [read_part(str(tricky), s, e, "llava", str(tricky.parent)) for s, e in ranges]
    table, keys = join_jsonl_parts([found for _, found in parts])
    table = mark_duplicates(table, keys, tricky, "llava")
    for col in ("line", "id", "id_kind", "reason", "offset", "length"):
        assert table.column(col).to_pylist() == local.column(col).to_pylist(), col
    reasons = [r for r in local.column("reason").to_pylist() if r]
    assert any("duplicate content" in r for r in reasons) and any("duplicate id" in r for r in reasons)
    assert len(reasons) == 3  # invalid JSON, r1's copy, r3's repeat
    scored = [part for part, _ in parts]  # what stays in the object store: the text, for the actors
    assert sum(p.num_rows for p in scored) == local.num_rows and scored[0].column_names == SCORED
    assert [v for p in scored for v in p.column("answer").to_pylist()] == local.column("answer").to_pylist()


def test_line_ranges_cut_at_line_ends_every_n_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    for data in (b"", b"a\n", b"a\nb\nc\nd\ne", b"a\n\nb\nc\nd\ne\nf\n"):
        path.write_bytes(data)
        for n in (1, 2, 3):
            for block in (1, 2, 64):
                pieces = [data[s:e] for s, e in line_ranges(path, n, block)]
                assert b"".join(pieces) == data
                assert all(p.count(b"\n") == n and p.endswith(b"\n") for p in pieces[:-1])
                assert pieces[-1].count(b"\n") <= n


def test_sharded_parquet_read_gives_read_records_verdicts(tmp_path):
    from metrics.ray_read import read_row_group
    from selector.core.parquet_records import Tables, chunk_starts, detect_layout, table_records
    from selector.core.sources import resolve_source
    from tests.fixtures.formats import onevision_rows, truncated_png, write_onevision

    rows = onevision_rows(30)
    rows[4]["image"] = {"bytes": truncated_png(), "path": "bad.png"}  # left to the actors' decode
    rows[11] = {**rows[2], "id": "copy-of-ov-2"}  # another row group: same content, another id
    rows[20] = {**rows[21], "id": "ov-3"}  # ov-3's id again, other content
    rows[25]["id"] = None  # an automatic id
    path = write_onevision(tmp_path / "ov.parquet", rows, row_group_size=7)
    local = read_records(path, check_image_files=False).table
    source = resolve_source(path)
    tables = Tables(source)
    layout = detect_layout(tables.schema, {}, None, str(path))
    sent = pickle.loads(pickle.dumps(tables))  # as a Ray task receives it: no open file handles
    found = [read_row_group(sent, layout, *start, str(source.root), 3) for start in chunk_starts(tables)]
    records = table_records(source, tables, layout, [f[0] for f in found], check_image_files=False)
    for col in ("line", "id", "id_kind", "reason", "images"):
        assert records.table.column(col).to_pylist() == local.column(col).to_pylist(), col
    reasons = [r for r in local.column("reason").to_pylist() if r]
    assert len(reasons) == 2 and "duplicate content" in reasons[0] and "duplicate id" in reasons[1]
    parts = [part for f in found for part in f[1:]]
    assert [p.num_rows for p in parts] == [3, 3, 1] * 4 + [2]  # row groups of 7 (and 2) in shards of 3
    assert [v for p in parts for v in p.column("answer").to_pylist()] == local.column("answer").to_pylist()
