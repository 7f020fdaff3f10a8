"""Promise: in Parquet, save_to_disk, WebDataset and compressed JSONL inputs, a hostile row, sample or shard costs
only itself: broken bytes, a decompression bomb, a truncated image, a missing member, a shard cut mid-file, unsafe
member names and links, non-UTF-8 text and odd values are rejected with a reason (and everything else selected);
a table whose columns cannot be read, or a cut Parquet file, is one line and exit 2, never a traceback."""
from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.core.records import read_records
from tests.fixtures.formats import (bomb_png, onevision_rows, png, tar_add, truncated_png, wds_sample, write_onevision,
                                    write_shard)


def _reasons(rs) -> dict[str, str | None]:
    """id -> reason of its first record (a later duplicate of the id does not replace it)."""
    t, out = rs.table, {}
    for i, r in zip(t.column("id").to_pylist(), t.column("reason").to_pylist()):
        out.setdefault(i, r)
    return out


def _with_bad_utf8(table: pa.Table, row: int) -> pa.Table:
    """`table` with the answer of row `row` replaced by bytes that are not UTF-8 (as a careless writer leaves)."""
    col = table.column("conversations").combine_chunks()
    values = col.values
    answers = values.field("value").cast(pa.binary()).to_pylist()
    answers[int(col.offsets[row].as_py()) + 1] = b"\xff\xfe not text"
    struct = pa.StructArray.from_arrays([values.field("from"), pa.array(answers, pa.binary()).view(pa.string())],
                                        names=["from", "value"])
    return table.set_column(table.schema.get_field_index("conversations"), "conversations",
                            pa.ListArray.from_arrays(col.offsets, struct))


@pytest.mark.timeout(120)
def test_parquet_rows_are_rejected_one_by_one_with_reasons(tmp_path, cli):
    rows = onevision_rows(12)
    hostile = {
        "broken": ({"bytes": b"this is not an image", "path": None}, "not an image"),
        "bomb": ({"bytes": bomb_png(), "path": None}, "decompression bomb"),
        "cut": ({"bytes": truncated_png(), "path": None}, "truncated"),
        "empty-cell": ({"bytes": None, "path": None}, "neither bytes nor a path"),
        "escape": ({"bytes": None, "path": "../outside.png"}, "leaves the images root"),
    }
    for name, (image, _) in hostile.items():
        rows.append({**onevision_rows(1, start=100 + len(rows))[0], "id": name, "image": image})
    rows.append({**rows[0], "id": "copy-of-0"})  # same conversation and image bytes as ov-0
    rows.append({**rows[1]})  # the same id again
    rows.append({**onevision_rows(1, start=300)[0], "id": "no-answer",
                 "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "   "}]})
    rows.append({**onevision_rows(1, start=301)[0], "id": "not-utf8"})
    table = pa.Table.from_pylist(rows, schema=write_onevision.__globals__["ONEVISION"])
    table = _with_bad_utf8(table, len(rows) - 1)
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "t.parquet", row_group_size=5)
    (tmp_path / "outside.png").write_bytes(png(1))
    rs = read_records(tmp_path / "data" / "t.parquet", workers=2)
    reasons = _reasons(rs)
    for name, (_, why) in hostile.items():
        assert why in (reasons[name] or ""), (name, reasons[name])
    assert "duplicate content of id \"ov-0\"" in reasons["copy-of-0"]
    assert "empty answer" in reasons["no-answer"] and "not valid UTF-8" in reasons["not-utf8"]
    assert "duplicate id" in rs.table.column("reason")[18].as_py()
    assert all(reasons[f"ov-{i}"] is None for i in range(12))
    rc, out, err = cli("select", tmp_path / "data" / "t.parquet", "--out", tmp_path / "o.parquet", "--budget", "5")
    assert rc == 0 and "read 21, rejected 9, selected 5, not selected 7" in out and "Traceback" not in err
    rejected = [json.loads(x) for x in (tmp_path / "o.parquet.rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 9 and all(r["reason"] for r in rejected)


def test_parquet_odd_values_cost_their_rows_and_odd_columns_are_one_line(tmp_path, cli):
    conv = [[{"from": "human", "value": "q"}, {"from": "gpt", "value": f"answer {i}"}] for i in range(5)]
    pq.write_table(pa.table({"id": pa.array([1.0, float("nan"), 3.0, 2.5, None]), "conversations": conv}),
                   tmp_path / "ids.parquet")
    reasons = [r for r in read_records(tmp_path / "ids.parquet", workers=1).table.column("reason").to_pylist()]
    assert reasons[0] is None and reasons[2] is None and reasons[4] is None
    assert "id must be a string or an integer" in reasons[1] and "2.5" in reasons[3]
    text = [json.dumps(c) for c in conv[:3]] + ["[{\"from\": \"human\"", "42"]
    pq.write_table(pa.table({"conversations": text}), tmp_path / "json-text.parquet")
    reasons = read_records(tmp_path / "json-text.parquet", workers=1).table.column("reason").to_pylist()
    assert reasons[:3] == [None] * 3 and "not valid JSON" in reasons[3] and "no conversation" in reasons[4]
    pq.write_table(pa.table({"conversations": np.arange(4)}), tmp_path / "ints.parquet")
    rc, _, err = cli("select", tmp_path / "ints.parquet", "--out", tmp_path / "o.parquet", "--budget", "1")
    assert rc == 2 and "not a list of {from, value} turns" in err and len(err.strip().splitlines()) == 1


def test_a_cut_parquet_file_and_an_input_shard_as_output_are_one_line(tmp_path, cli):
    good = write_onevision(tmp_path / "shards" / "a.parquet", onevision_rows(8))
    data = good.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    rc, _, err = cli("select", tmp_path / "cut.parquet", "--out", tmp_path / "o.parquet", "--budget", "1")
    assert rc == 2 and "not a readable Parquet file" in err and "Traceback" not in err
    before = good.read_bytes()
    rc, _, err = cli("select", tmp_path / "shards", "--out", good, "--budget", "2")
    assert rc == 2 and "overwrite the input" in err and good.read_bytes() == before


def test_save_to_disk_rows_with_bad_images_are_rejected(tmp_path):
    import datasets

    images = [{"bytes": png(i), "path": None} for i in range(6)]
    images[2], images[4] = {"bytes": bomb_png(), "path": None}, {"bytes": truncated_png(), "path": None}
    ds = datasets.Dataset.from_dict(
        {"id": [f"d{i}" for i in range(6)], "image": images,
         "conversations": [[{"from": "human", "value": "q"}, {"from": "gpt", "value": f"a{i}"}] for i in range(6)]},
        features=datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                    "conversations": [{"from": datasets.Value("string"),
                                                       "value": datasets.Value("string")}]}))
    ds.save_to_disk(str(tmp_path / "disk"))
    reasons = _reasons(read_records(tmp_path / "disk", workers=2))
    assert "decompression bomb" in reasons["d2"] and "truncated or corrupt" in reasons["d4"]
    assert [reasons[f"d{i}"] for i in (0, 1, 3, 5)] == [None] * 4


@pytest.mark.timeout(120)
def test_webdataset_samples_are_rejected_one_by_one(tmp_path, cli, monkeypatch):
    import selector.core.images as images
    import selector.core.webdataset_records as wr

    monkeypatch.setattr(wr, "MAX_TEXT_BYTES", 400)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 50_000)  # decoder workers are forked: they see it too
    good = [(f"g{i}", wds_sample(f"g{i}", i)) for i in range(4)]
    meta = wds_sample("x", 0)["json"]
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for key, members in good:
            for ext, data in members.items():
                tar_add(tf, f"{key}.{ext}", data)
        for key, img in (("broken", b"garbage bytes"), ("bomb", bomb_png()), ("huge", png(1, size=200))):
            tar_add(tf, f"{key}.png", img)
            tar_add(tf, f"{key}.json", meta)
        tar_add(tf, "noimage.json", meta)
        tar_add(tf, "notext.png", png(2))
        tar_add(tf, "../evil.png", png(3))
        tar_add(tf, "../evil.json", meta)
        tar_add(tf, "/abs/x.png", png(4))
        tar_add(tf, "/abs/x.json", meta)
        tar_add(tf, "sym.png", b"", tarfile.SYMTYPE, "/etc/passwd")
        tar_add(tf, "sym.json", meta)
        tar_add(tf, "hard.png", b"", tarfile.LNKTYPE, "g0.jpg")
        tar_add(tf, "hard.json", meta)
        tar_add(tf, "twice.png", png(5))
        tar_add(tf, "twice.json", meta)
        tar_add(tf, "twice.json", meta)
        tar_add(tf, "latin.png", png(6))
        tar_add(tf, "latin.txt", "caf\xe9".encode("latin-1"))
        tar_add(tf, "badjson.png", png(7))
        tar_add(tf, "badjson.json", b"{not json")
        tar_add(tf, "bigtext.png", png(8))
        tar_add(tf, "bigtext.txt", b"long caption " * 40)
    rs = read_records(path, workers=2)
    reasons = _reasons(rs)
    expect = {"broken": "not an image", "bomb": "decompression bomb", "huge": "larger than",
              "noimage": "no image member", "notext": "no .json or .txt member", "../evil": "leaves its folder",
              "/abs/x": "absolute", "sym": "symlink", "hard": "hard link", "twice": "appears twice",
              "latin": "not valid UTF-8", "badjson": "invalid JSON", "bigtext": "larger than"}
    for key, why in expect.items():
        assert why in (reasons[key] or ""), (key, reasons[key])
    assert [reasons[f"g{i}"] for i in range(4)] == [None] * 4
    rc, out, err = cli("select", path, "--out", tmp_path / "o.tar", "--budget", "2")
    assert rc == 0 and f"read 17, rejected {len(expect)}, selected 2, not selected 2" in out
    with tarfile.open(tmp_path / "o.tar") as tf:  # nothing unsafe was copied
        assert all(m.isreg() and not m.name.startswith(("/", "..")) for m in tf)


def test_a_truncated_shard_costs_only_its_broken_samples(tmp_path, cli):
    first = write_shard(tmp_path / "s-000.tar", [(f"a{i}", wds_sample(f"a{i}", i)) for i in range(6)])
    write_shard(tmp_path / "s-001.tar", [(f"b{i}", wds_sample(f"b{i}", i)) for i in range(4)] +
                [("a0", wds_sample("a0", 0))])  # a key seen in the first shard
    with tarfile.open(first) as tf:
        cut_in = next(m for m in tf if m.name.startswith("a4."))
    data = first.read_bytes()
    first.write_bytes(data[: cut_in.offset_data + cut_in.size // 2])
    rs = read_records(f"{tmp_path}/s-{{000..001}}.tar", workers=2)
    reasons = _reasons(rs)
    assert [reasons[f"a{i}"] for i in range(4)] == [None] * 4
    assert "cut" in reasons["a4"] and "a5" not in reasons
    assert [reasons[f"b{i}"] for i in range(4)] == [None] * 4
    assert "duplicate id" in rs.table.column("reason")[-1].as_py()
    rc, out, err = cli("select", f"{tmp_path}/s-{{000..001}}.tar", "--out", tmp_path / "o.tar", "--budget", "1.0")
    assert rc == 0 and "read 10, rejected 2, selected 8, not selected 0" in out and "Traceback" not in err


def test_a_truncated_gzip_stops_the_run_instead_of_losing_the_rest(tmp_path, cli):
    """It used to keep the records before the cut: the ones after it were lost without a count (a cut zstd block
    lost every record). Now it is one line naming where the stream stopped (tests/hardening/
    test_compressed_inputs_never_lose_records.py covers every compression)."""
    lines = [json.dumps({"id": f"r{i}", "conversations": [{"from": "human", "value": "q"},
                                                           {"from": "gpt", "value": f"answer {i} " + "x" * 300}]})
             for i in range(40)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    (tmp_path / "d.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])
    rc, _, err = cli("select", tmp_path / "d.jsonl.gz", "--out", tmp_path / "o.jsonl", "--budget", "3")
    assert rc == 2 and "ends early" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_a_compressed_bomb_is_refused_in_one_line_without_filling_the_disk(tmp_path, cli, kind):
    """96 MiB of one repeated record packs into well under 1 MiB: past 200x (and the 64 MiB floor) it is refused
    before it is written out, and what was written is removed."""
    import tempfile
    import zlib

    import zstandard

    line = (json.dumps({"id": "r", "conversations": [{"from": "human", "value": "q"},
                                                      {"from": "gpt", "value": "a"}]}) + "\n").encode()
    block = line * ((1 << 20) // len(line))
    c = zlib.compressobj(9, zlib.DEFLATED, 31) if kind == "gz" else zstandard.ZstdCompressor().compressobj()
    packed = b"".join([c.compress(block) for _ in range(96)] + [c.flush()])
    assert len(packed) < 1 << 20
    bomb = tmp_path / f"bomb.jsonl.{kind}"
    bomb.write_bytes(packed)
    before = set(Path(tempfile.gettempdir()).glob("mmselect-*"))
    rc, out, err = cli("select", bomb, "--out", tmp_path / "o.jsonl", "--budget", "3")
    assert rc == 2 and "decompression bomb" in err and "MMSELECT_MAX_EXPANSION" in err and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()
    assert set(Path(tempfile.gettempdir()).glob("mmselect-*")) <= before
    assert bomb.read_bytes() == packed


def test_a_well_compressed_real_file_is_still_read(tmp_path, monkeypatch):
    """The bomb guard is a ratio with a floor: a small file that compresses 1,000:1 is read in full."""
    lines = "".join(json.dumps({"id": f"r{i}", "conversations": [{"from": "human", "value": f"q{i} " + "q" * 2000},
                                                                  {"from": "gpt", "value": f"a{i} " + "a" * 2000}]})
                    + "\n"
                    for i in range(300))
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(lines.encode(), 9))
    assert len(read_records(tmp_path / "d.jsonl.gz", workers=1).valid_rows()) == 300
    monkeypatch.setenv("MMSELECT_MAX_EXPANSION", "abc")
    with pytest.raises(Exception, match="MMSELECT_MAX_EXPANSION must be a whole number"):
        read_records(tmp_path / "d.jsonl.gz", workers=1)
