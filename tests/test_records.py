"""Instruction-record I/O: format round trips, every rejection reason, strict mode."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selector.core.errors import FormatError, RecordError
from selector.core.records import read_records, write_records


def _png(path: Path, value: int = 128) -> str:
    """A 64x64 noisy PNG, large enough that cutting it in half leaves a valid header but truncated pixel data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(value).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path.name


def _llava(i, image="img/a.png", answer="A cat on a mat.", **extra):
    rec = {"id": f"r{i}", "image": image,
           "conversations": [{"from": "human", "value": "<image>\nDescribe it."}, {"from": "gpt", "value": answer}]}
    rec.update(extra)
    return rec


def _write_jsonl(path: Path, rows) -> Path:
    with open(path, "wb") as f:
        for r in rows:
            f.write(r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode())
            f.write(b"\n")
    return path


def _roundtrip(tmp_path, src: Path, **kw):
    rs = read_records(src, **kw)
    assert rs.rejected() == []
    out = tmp_path / ("out" + src.suffix)
    write_records(rs, np.arange(len(rs)), out)
    return rs, out


def test_llava_jsonl_roundtrip_preserves_every_field(tmp_path):
    _png(tmp_path / "img" / "a.png")
    rows = [_llava(0, extra_field={"nested": [1, 2.5, None]}), _llava(1, answer="Ünïcödé ✓ text", score=3)]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    rs, out = _roundtrip(tmp_path, src)
    assert rs.layout.container == "jsonl" and rs.layout.schema == "llava"
    assert [json.loads(l) for l in out.read_text().splitlines()] == rows
    row = rs.valid()[0]
    assert row["instruction"] == "Describe it." and row["answer"] == "A cat on a mat." and row["images"] == ["img/a.png"]
    import datasets

    assert isinstance(rs.dataset, datasets.Dataset) and rs.dataset.num_rows == len(rs) == 2
    assert rs.dataset["id"] == [r["id"] for r in rows]


def test_llava_json_list_roundtrip(tmp_path):
    _png(tmp_path / "img" / "a.png")
    rows = [_llava(i, answer=f"answer {i}") for i in range(5)]
    src = tmp_path / "in.json"
    src.write_text(json.dumps(rows, indent=2))
    rs, out = _roundtrip(tmp_path, src)
    assert rs.layout.container == "json"
    assert json.loads(out.read_text()) == rows


def test_cc_sbu_align_folder_roundtrip(tmp_path):
    root = tmp_path / "cc_sbu_align"
    for i in (1, 2):
        _png(root / "image" / f"{i}.jpg".replace(".jpg", ".png"))
        Image.open(root / "image" / f"{i}.png").convert("RGB").save(root / "image" / f"{i}.jpg")
    doc = {"info": "kept", "annotations": [{"image_id": "1", "caption": "A red bus."},
                                           {"image_id": "2", "caption": "Two dogs play.", "extra": 1}]}
    (root / "filter_cap.json").write_text(json.dumps(doc, indent=4))
    rs = read_records(root)
    assert rs.layout.schema == "cc_sbu" and rs.rejected() == []
    assert rs.valid()[0]["instruction"] == "Describe this image in detail."
    out = tmp_path / "sel.json"
    write_records(rs, np.array([1]), out)
    assert json.loads(out.read_text()) == {"info": "kept", "annotations": [doc["annotations"][1]]}


def test_sharegpt_and_messages_roundtrip(tmp_path):
    share = [{"id": "s1", "conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "Hi"},
                                            {"from": "gpt", "value": "Hello!"}]}]
    src = _write_jsonl(tmp_path / "share.jsonl", share)
    rs, out = _roundtrip(tmp_path, src)
    assert rs.layout.schema == "sharegpt"
    assert [json.loads(l) for l in out.read_text().splitlines()] == share

    _png(tmp_path / "pics" / "x.png")
    msgs = [{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "pics/x.png"}},
                                                       {"type": "text", "text": "What is it?"}]},
                          {"role": "assistant", "content": "A grey square."}]}]
    src = _write_jsonl(tmp_path / "msgs.jsonl", msgs)
    rs = read_records(src)
    assert rs.layout.schema == "messages" and rs.rejected() == []
    row = rs.valid()[0]
    assert row["id"] == "line-1" and row["images"] == ["pics/x.png"] and row["instruction"] == "What is it?"
    out = tmp_path / "m_out.jsonl"
    write_records(rs, np.array([0]), out)
    assert [json.loads(l) for l in out.read_text().splitlines()] == msgs


def test_format_override(tmp_path):
    src = _write_jsonl(tmp_path / "x.jsonl", [{"id": 1, "conversations": [{"from": "human", "value": "q"},
                                                                           {"from": "gpt", "value": "a"}]}])
    assert read_records(src, fmt="llava").layout.schema == "llava"
    with pytest.raises(FormatError):
        read_records(src, fmt="nope")


@pytest.fixture
def bad_file(tmp_path):
    img = tmp_path / "img"
    _png(img / "a.png")
    _png(img / "b.png", 30)
    full = (img / "b.png").read_bytes()
    (img / "trunc.png").write_bytes(full[: len(full) // 2])
    (img / "fake.png").write_text("this is not an image")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_bytes(full)
    rows = [
        _llava(0),                                                                  # 1 ok
        b'{"id": "broken", "conversations": [',                                     # 2 invalid JSON
        {"id": "noconv", "image": "img/a.png"},                                     # 3 no conversation
        {"id": "noans", "conversations": [{"from": "human", "value": "hi"}]},      # 4 no answer
        _llava(5, answer="   "),                                                   # 5 empty answer
        {"id": "role", "conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]},  # 6
        _llava(7, image="img/missing.png"),                                        # 7 missing image
        _llava(8, image="img/trunc.png"),                                          # 8 truncated
        _llava(9, image="img/fake.png"),                                           # 9 not an image
        _llava(10, image=f"../{outside.name}"),                                        # 10 leaves root
        _llava(11, image=str(outside)),                           # 11 absolute outside
        _llava(0, answer="another answer"),                                        # 12 duplicate id r0
        b'{"id": "utf", "conversations": [{"from": "gpt", "value": "caf\xe9"}]}',  # 13 invalid UTF-8
        _llava(14, image="img/b.png"),                                             # 14 ok
        _llava(15, image="img/b.png"),                                             # 15 duplicate content of r14
        {"id": "unreadable", "image": "img", "conversations": [{"from": "gpt", "value": "x"}]},  # 16 a folder
    ]
    return _write_jsonl(tmp_path / "data.jsonl", rows), img


EXPECTED = {
    2: "invalid JSON", 3: "no conversation", 4: "no answer", 5: "empty answer", 6: "unknown role 'robot'",
    7: "image file missing", 8: "image truncated or corrupt", 9: "not an image", 10: "leaves the images root",
    11: "leaves the images root", 12: "duplicate id (first seen at line 1)", 13: "invalid UTF-8",
    15: 'duplicate content of id "r14"', 16: "image path is not a file",
}


@pytest.mark.parametrize("workers", [1, 2])
def test_every_rejection_reason(bad_file, workers):
    src, img = bad_file
    rs = read_records(src, images=img.parent, workers=workers)
    rejected = {r["line"]: r for r in rs.rejected()}
    assert sorted(rejected) == sorted(EXPECTED)
    for line, fragment in EXPECTED.items():
        assert fragment in rejected[line]["reason"], (line, rejected[line])
    assert rejected[12]["id"] == "r0"
    assert list(rs.valid()["id"]) == ["r0", "r14"]


def test_strict_stops_at_first_bad_record_with_file_and_line(bad_file):
    src, img = bad_file
    with pytest.raises(RecordError) as err:
        read_records(src, images=img.parent, strict=True)
    assert f"{src}:2:" in str(err.value) and "invalid JSON" in str(err.value)


def test_invalid_utf8_inside_json_list_rejects_only_that_record(tmp_path):
    _png(tmp_path / "img" / "a.png")
    good = json.dumps(_llava(0)).encode()
    bad = json.dumps(_llava(1, answer="PLACEHOLDER")).encode().replace(b"PLACEHOLDER", b"caf\xe9")
    (tmp_path / "in.json").write_bytes(b"[" + good + b"," + bad + b"]")
    rs = read_records(tmp_path / "in.json")
    assert [r["reason"][:19] for r in rs.rejected()] == ["invalid UTF-8 bytes"]
    assert list(rs.valid()["id"]) == ["r0"]


def test_large_jsonl_parsed_in_parallel_equals_serial(tmp_path, monkeypatch):
    import selector.core.records as records

    rows = [{"id": i, "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a" * (i % 7 + 1)}]}
            for i in range(3000)]
    rows[1500] = b"not json"
    src = _write_jsonl(tmp_path / "big.jsonl", rows)
    serial = read_records(src, workers=1).table
    monkeypatch.setattr(records, "PARALLEL_MIN_BYTES", 1)
    parallel = read_records(src, workers=2).table
    assert parallel.equals(serial)
    assert parallel.column("line").to_pylist() == list(range(1, 3001))


def test_vectorised_parser_equals_per_record_parser(tmp_path):
    """The Arrow fast path and the per-record parser agree on every field, reasons included."""
    from selector.core.fastjsonl import parse_block
    from selector.core.records import SCHEMA, _parse_jsonl_range

    turn = lambda role, text: {"from": role, "value": text}  # noqa: E731
    rows = [
        {"id": "a", "image": "x.png", "conversations": [turn("human", "<image>\n  Describe. "), turn("gpt", "Fine.")]},
        {"id": "b", "conversations": [turn("system", "s"), turn("human", "q1"), turn("gpt", "a1"), turn("human", "q2"),
                                      turn("gpt", "a2 ✓")]},
        {"conversations": [turn("human", "no id"), turn("gpt", "ok")]},
        {"id": "c", "conversations": []},
        {"id": "d"},
        {"id": "e", "conversations": [turn("human", "q"), turn("robot", "x"), turn("gpt", "")]},
        {"id": "f", "conversations": [turn("human", "q"), turn("gpt", " \t ")]},
        {"id": "g", "conversations": [turn("human", "only a question")]},
        {"id": "h", "conversations": [{"role": "user", "content": "alt keys"}, {"role": "assistant", "content": "yes"}]},
        {"id": "i", "conversations": [turn("gpt", "answer first"), turn(None, "null role")]},
        {"id": "j", "image": None, "extra": {"k": [1, 2]}, "conversations": [turn("human", None), turn("gpt", "a")]},
    ]
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + (b"\r\n" if i % 3 == 0 else b"\n")
                    for i, r in enumerate(rows))
    path = tmp_path / "conv.jsonl"
    path.write_bytes(data)
    from selector.core.records import _reparse_lines

    assert parse_block(data, 0, SCHEMA) is None  # rows "j" (a null, an extra field) need the exact parser ...
    fast = parse_block(data, 0, SCHEMA, reparse=_reparse_lines(data, 0, "llava"))  # ... which gets just those rows
    slow, n_lines = _parse_jsonl_range(str(path), 0, len(data), "llava", False)
    assert fast is not None and n_lines == len(rows)
    assert fast.to_pylist() == slow.to_pylist()
    assert fast.column("reason").to_pylist()[3:9] == [
        "no conversation", "no conversation", "unknown role 'robot' (turn 2)", "empty answer (turn 2)", "no answer",
        None]
    # Blocks the reader cannot type fall back to the per-record parser.
    assert parse_block(b'{"id": 1, "conversations": []}\n', 0, SCHEMA) is None
    assert parse_block(b'{"id": "a"}\n\n{"id": "b"}\n', 0, SCHEMA) is None
    null_turn = b'{"id": "k", "conversations": [null, {"from": "gpt", "value": "x"}]}\n'
    assert parse_block(null_turn, 0, SCHEMA) is None
    (tmp_path / "null_turn.jsonl").write_bytes(null_turn)
    assert read_records(tmp_path / "null_turn.jsonl").rejected()[0]["reason"] == "turn 1 is not an object"


def test_exact_duplicates_are_found_whatever_the_fingerprint_windows_see():
    """Values that agree on length, start, middle and end but differ elsewhere are not duplicates; equal values
    are, wherever they sit in the Arrow buffers (short values, the buffer's end, sliced chunks)."""
    import numpy as np
    import pyarrow as pa

    from selector.core.dedup import all_distinct, fingerprint, repeats

    a = "abcdefgh" + "x" * 10 + "MIDDLE" + "y" * 10 + "12345678"
    b = a[:10] + "Z" + a[11:]  # one byte differs outside every window
    vals = ["", "q", "qq", "abcdefg", a, b, "q", a, "", "abcdefg", "é", "é"]
    col = pa.chunked_array([pa.array(["pad"] + vals[:6]).slice(1), pa.array(vals[6:])])
    fp = fingerprint(col)
    assert fp[4] == fp[5]  # the windows cannot tell a from b ...
    rows, first = repeats([col], np.arange(len(vals)))
    assert dict(zip(rows.tolist(), first.tolist())) == {6: 1, 7: 4, 8: 0, 9: 3, 11: 10}  # ... the exact step does
    assert not all_distinct(col) and all_distinct(pa.array(["a", "b", "ab"]))
    # a multi-column key: equal answers under different instructions are not duplicates
    instr = pa.chunked_array([["i1", "i2", "i1", "i1"]])
    ans = pa.chunked_array([["same", "same", "same", "other"]])
    rows, first = repeats([instr, ans], np.arange(4))
    assert rows.tolist() == [2] and first.tolist() == [0]


def test_vectorised_parser_matches_per_record_parser_across_many_reader_batches(tmp_path, monkeypatch):
    """A seeded mix of valid and invalid conversation records, parsed with reader batches of ~1 KiB (so validation
    runs over many batches and both schemas), equals the per-record parser field by field."""
    import random

    from selector.core import fastjsonl
    from selector.core.fastjsonl import parse_block
    from selector.core.records import SCHEMA, _parse_jsonl_range

    rng = random.Random(7)
    texts = ["Fine.", " padded ", "\u3000wide space\u3000", "", "   ", "multi\nline", "<image>\nWhat digit?",
             "ünïcödé ✓", "x" * 300]

    def turn(i):
        role = rng.choice(["human", "gpt", "gpt", "system", "robot"])
        return {"from": role, "value": rng.choice(texts)}

    rows = []
    for i in range(400):
        rec = {"id": f"r{i}" if rng.random() > 0.1 else None, "conversations": [turn(k) for k in range(rng.randint(0, 5))]}
        if rng.random() < 0.3:
            rec["image"] = f"img/{i}.png"
        if rec["id"] is None:
            del rec["id"]
        rows.append(rec)
    plain = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)
    alt = plain + json.dumps({"id": "alt", "conversations": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]}).encode() + b"\n"
    monkeypatch.setattr(fastjsonl, "READ_BLOCK", 1 << 10)
    for data in (plain, alt):
        path = tmp_path / "mixed.jsonl"
        path.write_bytes(data)
        fast = parse_block(data, 0, SCHEMA)
        slow, _ = _parse_jsonl_range(str(path), 0, len(data), "llava", False)
        assert fast is not None
        assert fast.to_pylist() == slow.to_pylist()


def test_image_token_scan_finds_every_mention_and_ignores_text_outside_the_slice():
    import pyarrow as pa

    from selector.core.fastjsonl import _may_contain

    token = b"<image>"
    assert _may_contain(pa.array(["q", "a <image> b"]), token)
    assert _may_contain(pa.array(["<image>"]), token) and _may_contain(pa.array(["x", "ends <image>"]), token)
    assert not _may_contain(pa.array(["<imag", "no token <<image", "", "<"]), token)
    assert not _may_contain(pa.array([], pa.string()), token)
    assert not _may_contain(pa.array(["<image> before", "plain", "after <image>"]).slice(1, 1), token)


def test_duplicate_keys_from_the_parse_threads_match_the_final_table(tmp_path, monkeypatch):
    """Keys computed range by range (fast ranges in the threads, a fallback range after) equal the keys of the
    assembled table, and duplicates are found across ranges with the first occurrence kept."""
    import numpy as np

    import selector.core.records as records

    turn = lambda role, text: {"from": role, "value": text}  # noqa: E731
    rows = [{"id": f"r{i}", "conversations": [turn("human", f"q{i % 50}"), turn("gpt", f"answer {i % 50}")]}
            for i in range(400)]
    rows[250] = {"id": "r3", "conversations": [turn("human", "new"), turn("gpt", "fresh")]}  # a repeated id
    rows[300] = {"id": 1, "conversations": [turn("human", "numeric id"), turn("gpt", "forces a fallback range")]}
    src = _write_jsonl(tmp_path / "dups.jsonl", rows)
    monkeypatch.setattr(records, "RANGE_BYTES", 4096)
    monkeypatch.setattr(records, "PARALLEL_MIN_BYTES", 1)
    table, keys = records._read_jsonl(src, "llava", False, 2)
    assert table.column("line").to_pylist() == list(range(1, 401))
    expected = records.dedup_keys(table)
    assert all(np.array_equal(keys[k], expected[k]) for k in ("id", "content"))
    reasons = read_records(src, workers=2).table.column("reason").to_pylist()
    assert reasons[250] == "duplicate id (first seen at line 4)"
    assert reasons[60] == 'duplicate content of id "r10"' and reasons[10] is None


@pytest.mark.parametrize("lines", [
    ['{"id": "a", "instruction": "hi", "answer": "x"}', '{"id": "b", "instruction": "yo", "answer": "y"}'],
    ['{}', '{}'],
    ['{"id": "a", "conversations": []}', '{"id": "b", "conversations": null}'],
])
def test_a_file_where_no_record_has_a_conversation_rejects_each_record(tmp_path, lines):
    """Not one turn in the whole block: every record is a rejection with its reason, not a reader crash."""
    path = tmp_path / "noconv.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rs = read_records(path)
    assert rs.valid_mask().sum() == 0
    assert [r["reason"] for r in rs.rejected()] == ["no conversation", "no conversation"]
