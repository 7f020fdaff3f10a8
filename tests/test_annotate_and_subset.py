"""`select --annotate` adds only `"mmselect": {"score", "rank", "group"}` to each kept record (every other byte as
read), and `prune --subset-dir` writes a folder dataset's kept images as a tree whose files the JSON names."""
from __future__ import annotations

import json

import pytest

from selector.core.annotate import with_member, without_member


@pytest.mark.parametrize("text", [
    '{}', '{"a": 1}', '{ "a" : [1, {"b": "}"}] ,"c":"x\\"y" }', '{\n    "a": 1.50,\n    "b": null\n}',
    '{"mmselect": 3, "a": 1}', '{"a": 1, "mmselect": {"x": "}"}, "b": 2}', '{"a": 1,"mmselect":0}',
    '{"mmselect": [1]}',
])
def test_with_member_keeps_every_other_byte(text):
    out = with_member(text.encode(), "mmselect", {"score": 1.5, "rank": 2, "group": None}).decode()
    doc = json.loads(out)
    assert doc["mmselect"] == {"score": 1.5, "rank": 2, "group": None}
    assert without_member(out, "mmselect") == without_member(text, "mmselect")
    assert list(doc) == [k for k in json.loads(text) if k != "mmselect"] + ["mmselect"]
    assert with_member(out.encode(), "mmselect", 7) == with_member(text.encode(), "mmselect", 7)  # idempotent


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_select_annotate(tmp_path, suffix):
    from selector.app.cli import main

    rows = [{"id": f"r{i}", "n": 1.10, "conversations": [{"from": "human", "value": "q é"},
                                                         {"from": "gpt", "value": "x" * (i + 1)}]} for i in range(12)]
    rows[9]["mmselect"] = "old"
    texts = [json.dumps(r, ensure_ascii=False, indent=None if suffix == ".jsonl" else 2) for r in rows]
    src = tmp_path / f"d{suffix}"
    src.write_text("\n".join(texts) + "\n" if suffix == ".jsonl" else "[" + ",\n".join(texts) + "]")
    out = tmp_path / f"kept{suffix}"
    assert main(["-q", "select", str(src), "--budget", "5", "--out", str(out), "--annotate", "--workers", "1"]) == 0
    kept = ([json.loads(x) for x in out.read_text().splitlines()] if suffix == ".jsonl"
            else json.loads(out.read_text()))
    assert [r["id"] for r in kept] == ["r7", "r8", "r9", "r10", "r11"]  # file order
    assert [r["mmselect"]["rank"] for r in kept] == [5, 4, 3, 2, 1]
    assert [r["mmselect"]["score"] for r in kept] == [8.0, 9.0, 10.0, 11.0, 12.0]
    assert all(r["mmselect"]["group"] is None for r in kept)
    # every other byte of each kept record is the input's (a record's old "mmselect" member is replaced)
    from selector.core.records import read_records

    raw = {json.loads(t)["id"]: t for t in texts}
    written = read_records(out, check_image_files=False, dedup=False)
    for rid, text in zip(written.table.column("id").to_pylist(), written.source_bytes(written.valid_rows())):
        assert without_member(text.decode().rstrip("\n"), "mmselect") == without_member(raw[rid], "mmselect")
    assert kept[2]["id"] == "r9" and "old" not in json.dumps(kept[2])


def test_prune_subset_dir(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from selector.app.cli import main

    root = tmp_path / "ds"
    for c in ("cat", "dog"):
        (root / c / "sub").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((6, 6), 30 * i, np.uint8)).save(root / c / ("sub" if i == 3 else "") / f"{i}.png")
    for link in ("symlink", "copy"):
        out, tree = tmp_path / f"{link}.json", tmp_path / f"kept-{link}"
        assert main(["-q", "prune", "--dataset", f"folder:{root}", "--method", "random", "--keep", "0.5",
                     "--out", str(out), "--subset-dir", str(tree), "--link", link]) == 0
        doc = json.loads(out.read_text())
        assert len(doc["files"]) == 4 and len(set(doc["files"])) == 4
        listed = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.png"))
        assert listed == sorted(doc["files"])
        for f in doc["files"]:
            assert (tree / f).is_symlink() == (link == "symlink")
            assert (tree / f).read_bytes() == (root / f).read_bytes()
    # position i of the dataset is file i: the kept indices name the same files
    all_files = sorted(p.relative_to(root).as_posix() for p in (root / "cat").rglob("*.png")) + \
        sorted(p.relative_to(root).as_posix() for p in (root / "dog").rglob("*.png"))
    assert doc["files"] == [all_files[i] for i in doc["indices"]]
    capsys.readouterr()
    assert main(["-q", "prune", "--dataset", f"folder:{root}", "--method", "random", "--keep", "0.5",
                 "--out", str(tmp_path / "x.json"), "--subset-dir", str(tmp_path / "kept-copy")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_annotate_on_a_table_input_stops_before_any_ranking(tmp_path, monkeypatch, capsys):
    """Parquet output cannot carry the member: the run says so at once, before a ranker is built or scored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from selector.app import pipeline
    from selector.app.cli import main

    rows = [{"id": f"r{i}", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a" * i}]}
            for i in range(1, 6)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")

    def no_ranking(*a, **k):
        raise AssertionError("ranked before refusing --annotate")

    monkeypatch.setattr(pipeline, "align_scores", no_ranking)
    monkeypatch.setattr(pipeline, "select", no_ranking)
    rc = main(["-q", "select", str(tmp_path / "d.parquet"), "--budget", "2", "--out", str(tmp_path / "o.parquet"),
               "--annotate"])
    err = capsys.readouterr().err
    assert rc == 2 and "--annotate edits the input's own JSON records" in err and "Traceback" not in err
    assert not (tmp_path / "o.parquet").exists()
