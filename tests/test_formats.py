"""Inputs as users' data ships: LLaVA-OneVision Parquet shards, the_cauldron Parquet, a save_to_disk folder,
WebDataset shards and gzipped JSONL. Each is selected end to end (length, and the demo CLIP through `score` and
`select --scores`), and written back in kind: at budget 1.0 the output holds the input's values and image bytes."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.core.records import read_records
from tests.fixtures.formats import (cauldron_dataset, llava_jsonl_gz, onevision_rows, tar_members, write_onevision,
                                    write_shards)

KINDS = ("onevision", "cauldron", "disk", "webdataset", "jsonl.gz")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """kind -> (input spec, the input's files, number of records)."""
    root = tmp_path_factory.mktemp("formats")
    ov = [write_onevision(root / "ov" / "train-00000-of-00002.parquet", onevision_rows(10)),
          write_onevision(root / "ov" / "train-00001-of-00002.parquet", onevision_rows(6, start=10))]
    ds = cauldron_dataset(8)
    ds.to_parquet(str(root / "cauldron.parquet"))
    ds.save_to_disk(str(root / "disk"))
    shards = write_shards(root / "wds", 3, 4)
    gz = llava_jsonl_gz(root / "gz" / "data.jsonl.gz", 12)
    return {"onevision": (root / "ov", ov, 16), "cauldron": (root / "cauldron.parquet", [root / "cauldron.parquet"], 8),
            "disk": (root / "disk", sorted((root / "disk").glob("*.arrow")), 8),
            "webdataset": (f"{root}/wds/shard-{{000..002}}.tar", shards, 12), "jsonl.gz": (gz, [gz], 12)}


def _out(tmp_path, kind):
    return tmp_path / {"webdataset": "out.tar", "jsonl.gz": "out.jsonl.gz"}.get(kind, "out.parquet")


@pytest.mark.parametrize("kind", KINDS)
def test_select_by_length_keeps_the_longest_answers(data, kind, cli, tmp_path):
    spec, _, n = data[kind]
    out = _out(tmp_path, kind)
    rc, stdout, err = cli("select", spec, "--out", out, "--budget", "3", "--workers", "2")
    assert rc == 0, err
    assert stdout.strip().endswith(f"read {n}, rejected 0, selected 3, not selected {n - 3}")
    pool = read_records(spec, workers=1).table
    kept = read_records(out, workers=1, images=data[kind][0].parent if kind == "jsonl.gz" else None).table
    assert kept.num_rows == 3 and kept.column("reason").null_count == 3
    top = sorted(map(len, pool.column("answer").to_pylist()))[-3:]
    assert sorted(map(len, kept.column("answer").to_pylist())) == top
    assert set(kept.column("answer").to_pylist()) <= set(pool.column("answer").to_pylist())


@pytest.mark.parametrize("kind", ["onevision", "cauldron", "disk"])
def test_tables_round_trip_with_their_schema_row_groups_and_bytes(data, kind, cli, tmp_path):
    spec, files, n = data[kind]
    out = tmp_path / "all.parquet"
    assert cli("select", spec, "--out", out, "--budget", "1.0", "--workers", "2")[0] == 0
    if kind == "disk":
        source = pa.concat_tables(pa.ipc.open_stream(pa.memory_map(str(f))).read_all() for f in files)
        rows_per_group = pa.ipc.open_stream(pa.memory_map(str(files[0]))).read_next_batch().num_rows
    else:
        source = pa.concat_tables(pq.read_table(f) for f in files)
        rows_per_group = pq.ParquetFile(files[0]).metadata.row_group(0).num_rows
    written = pq.read_table(out)
    assert written.schema.equals(source.schema, check_metadata=True)  # HF features travel in the metadata
    assert written.num_rows == n and written.equals(source)
    meta = pq.ParquetFile(out).metadata
    assert meta.row_group(0).num_rows == rows_per_group and meta.num_rows == n
    col = "image" if kind == "onevision" else "images"
    flat = (lambda t: [c["bytes"] for v in t.column(col).to_pylist() for c in (v if isinstance(v, list) else [v])])
    assert flat(written) == flat(source) and all(flat(written))
    if kind != "onevision":
        import datasets

        assert datasets.Dataset.from_parquet(str(out)).features == cauldron_dataset(1).features


def test_webdataset_round_trip_copies_every_member_byte_for_byte(data, cli, tmp_path):
    import webdataset as wds

    spec, shards, n = data["webdataset"]
    out = tmp_path / "all.tar"
    assert cli("select", spec, "--out", out, "--budget", "1.0", "--workers", "2")[0] == 0
    assert tar_members([out]) == tar_members(shards)
    keys = [s["__key__"] for s in wds.WebDataset(str(out), shardshuffle=False)]
    assert keys == [f"s{i:05d}" for i in range(n)]
    folder = read_records(shards[0].parent, workers=1)  # a folder of shards reads like the pattern
    assert folder.table.column("id").to_pylist() == keys


def test_compressed_jsonl_round_trips_in_kind(data, cli, tmp_path):
    spec, _, _ = data["jsonl.gz"]
    for suffix in (".gz", ".zst"):
        out = tmp_path / f"all.jsonl{suffix}"
        rc, _, err = cli("select", spec, "--out", out, "--budget", "1.0", "--images", spec.parent)
        assert rc == 0, err
        head = out.read_bytes()[:4]
        assert head[:2] == b"\x1f\x8b" if suffix == ".gz" else head == b"\x28\xb5\x2f\xfd"
        again = read_records(out, images=spec.parent, workers=1)
        assert again.table.column("id").to_pylist() == [f"gz-{i}" for i in range(12)]
    assert gzip.decompress((tmp_path / "all.jsonl.gz").read_bytes()) == gzip.decompress(spec.read_bytes())
    plain = tmp_path / "plain.jsonl"
    assert cli("select", spec, "--out", plain, "--budget", "1.0", "--images", spec.parent)[0] == 0
    assert plain.read_bytes() == gzip.decompress(spec.read_bytes())  # --out's suffix decides the compression


@pytest.fixture(scope="module")
def demo_clip(digits_vqa, tmp_path_factory):
    from selector.app.demo.clip import DemoClipConfig, train_demo_clip

    return train_demo_clip(digits_vqa, tmp_path_factory.mktemp("clip") / "clip", DemoClipConfig(epochs=1),
                           progress=False)


@pytest.mark.parametrize("kind", KINDS)
def test_demo_clip_selects_every_kind_and_scores_it_by_record_id(data, kind, demo_clip, cli, tmp_path):
    spec, _, n = data[kind]
    images = ["--images", data[kind][0].parent] if kind == "jsonl.gz" else []
    clip = ["--metrics", "clip", "--clip-model", f"local-dir:{demo_clip}"]
    out = _out(tmp_path, kind)
    rc, stdout, err = cli("select", spec, "--out", out, "--budget", "2", *clip, *images)
    assert rc == 0, err
    assert stdout.strip().endswith(f"read {n}, rejected 0, selected 2, not selected {n - 2}")
    scores = tmp_path / "scores.parquet"
    rc, _, err = cli("score", spec, "--out", scores, *clip, "--no-cache", *images)
    assert rc == 0, err
    table = pq.read_table(scores)
    ids = read_records(spec, workers=1, images=images[1] if images else None).table.column("id").to_pylist()
    assert table.column("id").to_pylist() == ids and table.column("clip").null_count == 0
    by_id = dict(zip(table.column("id").to_pylist(), table.column("clip").to_pylist()))
    selected = json.loads(out.with_name(out.name + ".report.json").read_text())["selected_ids"]
    assert sorted((by_id[i] for i in selected), reverse=True) == sorted(by_id.values(), reverse=True)[:2]
    rc, _, err = cli("select", spec, "--out", tmp_path / ("again" + out.suffix), "--budget", "2", "--metrics", "clip",
                     "--scores", scores, *images)
    assert rc == 0, err
    again = json.loads((tmp_path / ("again" + out.suffix + ".report.json")).read_text())["selected_ids"]
    assert again == selected


def test_parquet_to_llava_json_extracts_the_embedded_images(data, cli, tmp_path):
    spec, files, n = data["onevision"]
    out = tmp_path / "sel.json"
    assert cli("select", spec, "--out", out, "--budget", "1.0", "--out-format", "llava-json")[0] == 0
    records = json.loads(out.read_text())
    source = {r["id"]: r for f in files for r in pq.read_table(f).to_pylist()}
    assert [r["id"] for r in records] == list(source)
    for r in records:
        assert (tmp_path / r["image"]).read_bytes() == source[r["id"]]["image"]["bytes"]
        assert r["conversations"] == source[r["id"]]["conversations"] and r["data_source"] == source[r["id"]]["data_source"]
    rc, stdout, _ = cli("select", out, "--out", tmp_path / "again.json", "--budget", "1.0")
    assert rc == 0 and f"read {n}, rejected 0" in stdout


def test_cauldron_and_webdataset_convert_to_llava_with_all_their_images(data, cli, tmp_path):
    out = tmp_path / "c.jsonl"
    assert cli("select", data["cauldron"][0], "--out", out, "--budget", "1.0", "--out-format", "llava-jsonl")[0] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    source = pq.read_table(data["cauldron"][0]).to_pylist()
    for r, s in zip(rows, source):
        assert [(tmp_path / p).read_bytes() for p in r["images"]] == [im["bytes"] for im in s["images"]]
        assert len(r["conversations"]) == 4 and r["conversations"][0]["value"].count("<image>") == len(s["images"])
        assert r["conversations"][3]["value"] == s["texts"][1]["assistant"]
    out = tmp_path / "w.json"
    assert cli("select", data["webdataset"][0], "--out", out, "--budget", "1.0", "--out-format", "llava-json")[0] == 0
    members = tar_members(data["webdataset"][1])
    for r in json.loads(out.read_text()):
        ext = "png" if (r["id"] + ".png") in members else "jpg"
        assert (tmp_path / r["image"]).read_bytes() == members[f"{r['id']}.{ext}"]


def test_columns_maps_other_names_and_rows_without_ids_get_shard_positions(tmp_path, cli):
    rows = onevision_rows(6)
    table = pa.table({"uid": pa.array([r["id"] for r in rows]).cast(pa.string()),
                      "img": pa.array([r["image"] for r in rows]),
                      "chat": pa.array([r["conversations"] for r in rows])})
    pq.write_table(table, tmp_path / "t.parquet")
    rc, _, err = cli("select", tmp_path / "t.parquet", "--out", tmp_path / "o.parquet", "--budget", "2")
    assert rc == 2 and "no conversations or texts column" in err and "--columns" in err and len(err.splitlines()) == 1
    rc, _, err = cli("select", tmp_path / "t.parquet", "--out", tmp_path / "o.parquet", "--budget", "2",
                     "--columns", "id=uid,image=img,conversations=chat")
    assert rc == 0, err
    assert set(pq.read_table(tmp_path / "o.parquet").column("uid").to_pylist()) <= {r["id"] for r in rows}
    rs = read_records(tmp_path / "t.parquet", columns={"image": "img", "conversations": "chat"}, workers=1)
    assert rs.table.column("id").to_pylist() == [f"t.parquet#{i}" for i in range(6)]
    numbered = pa.table({"id": pa.array(np.arange(6) * 10), "conversations": table.column("chat")})
    pq.write_table(numbered, tmp_path / "n.parquet")
    assert read_records(tmp_path / "n.parquet", workers=1).table.column("id").to_pylist() == [str(i * 10) for i in range(6)]
