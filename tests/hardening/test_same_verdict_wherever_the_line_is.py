"""Promise: a line's verdict depends on the line alone: not on its position (the first line included), on blank
lines elsewhere, on the parse path (Arrow fast path, per-record parser, JSON list), or on parse-range boundaries."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selector.core.records import read_records
from tests.hardening.conftest import rec, verdicts, write_jsonl

HOSTILE_LINES = {
    "invalid JSON": b'{"id": "broken", "conversations": [',
    "invalid UTF-8": b'{"id": "u", "conversations": [{"from": "human", "value": "caf\xe9"}, {"from": "gpt", "value": "x"}]}',
    "over 64 KiB": b'{"id": "long", "pad": "' + b"y" * 70000 + b'", broken',
    "not an object": b'[1, 2, 3]',
    "a bare string": b'"hello"',
    "NaN": b'{"id": "nan", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": NaN}]}',
    "garbage": b"\x00\x01\x02 not json at all",
    "duplicate key": b'{"id": "dk", "id": "dk2", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}',
    "lone surrogate": b'{"id": "s", "conversations": [{"from": "human", "value": "\\ud800"}, {"from": "gpt", "value": "a"}]}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_LINES))
@pytest.mark.parametrize("position", [0, 1, 5])
def test_a_bad_line_costs_one_record_wherever_it_sits(tmp_path, name, position):
    rows = [rec(i) for i in range(6)]
    rows.insert(position, HOSTILE_LINES[name])
    rs = read_records(write_jsonl(tmp_path / "d.jsonl", rows), workers=1)
    v = verdicts(rs)
    assert len(rs) == 7 and rs.layout.container == "jsonl"
    assert [line for line, r in v.items() if r] == [position + 1], v


@pytest.mark.parametrize("name", ["invalid UTF-8", "NaN", "duplicate key", "lone surrogate", "invalid JSON"])
def test_blank_lines_do_not_change_verdicts(tmp_path, name):
    """The Arrow fast path (no blank line) and the per-record parser (a blank line) agree."""
    rows = [rec(i) for i in range(5)] + [HOSTILE_LINES[name]]
    plain = read_records(write_jsonl(tmp_path / "a.jsonl", rows), workers=1)
    blank = read_records(write_jsonl(tmp_path / "b.jsonl", rows[:2] + [b""] + rows[2:]), workers=1)
    reasons = lambda rs: [r for r in rs.table.column("reason").to_pylist()]  # noqa: E731
    assert reasons(plain) == reasons(blank)
    assert reasons(plain)[-1] is not None and reasons(plain)[:-1] == [None] * 5


@pytest.mark.parametrize("name", ["invalid UTF-8", "NaN", "duplicate key", "lone surrogate"])
def test_json_list_and_jsonl_agree(tmp_path, name):
    rows = [rec(0), HOSTILE_LINES[name], rec(2)]
    jsonl = read_records(write_jsonl(tmp_path / "a.jsonl", rows), workers=1)
    body = b"[\n" + b",\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n]\n"
    (tmp_path / "a.json").write_bytes(body)
    listed = read_records(tmp_path / "a.json", workers=1)
    assert listed.layout.container == "json"
    kinds = lambda rs: [None if r is None else r.split(":")[0].split(" at byte")[0]  # noqa: E731
                        for r in rs.table.column("reason").to_pylist()]
    assert kinds(jsonl) == kinds(listed)


def test_auto_ids_are_global_across_parse_ranges(tmp_path, monkeypatch):
    """Records without an id keep distinct ids when the file is parsed in several ranges (issue: half of a 2,200
    record file was rejected as 'duplicate id')."""
    import selector.core.records as records

    rows = [{k: v for k, v in rec(i).items() if k != "id"} for i in range(400)]
    src = write_jsonl(tmp_path / "noid.jsonl", rows)
    monkeypatch.setattr(records, "RANGE_BYTES", 4096)
    rs = read_records(src, workers=1)
    assert rs.table.column("reason").null_count == 400
    assert rs.table.column("id").to_pylist() == [f"line-{i}" for i in range(1, 401)]


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_record = st.fixed_dictionaries({"q": _text, "a": _text, "id": st.one_of(st.none(), _text, st.integers(-10, 10**20))})
_corruption = st.sampled_from(sorted(HOSTILE_LINES) + ["truncate", "blank", "crlf", "empty-answer"])


def _encode(r: dict, k: int) -> bytes:
    obj = {"conversations": [{"from": "human", "value": r["q"]}, {"from": "gpt", "value": r["a"] or "ok"}]}
    if r["id"] is not None:
        obj["id"] = r["id"]
    else:
        obj["id"] = f"k{k}"  # distinct, so duplicate-id verdicts do not depend on which line is corrupted
    obj["conversations"][1]["value"] += f" #{k}"  # distinct content too
    return json.dumps(obj, ensure_ascii=False).encode()


def _corrupt(data: bytes, how: str) -> bytes:
    if how in HOSTILE_LINES:
        return HOSTILE_LINES[how]
    return {"truncate": data[: len(data) // 2], "blank": b"   ", "crlf": data + b"\r",
            "empty-answer": b'{"id": "e", "conversations": [{"from": "gpt", "value": " "}]}'}[how]


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=st.lists(_record, min_size=2, max_size=8), which=st.integers(0, 7), how=_corruption)
def test_property_corrupting_one_line_changes_no_other_verdict(tmp_path_factory, records, which, how):
    tmp = tmp_path_factory.mktemp("prop")
    which %= len(records)
    lines = [_encode(r, k) for k, r in enumerate(records)]
    ids = [r["id"] for r in records]
    if len(set(map(json.dumps, [i for i in ids if i is not None]))) != len([i for i in ids if i is not None]):
        return  # repeated explicit ids: a duplicate-id verdict legitimately depends on which one comes first
    clean = read_records(write_jsonl(tmp / "clean.jsonl", lines), workers=1, check_image_files=False)
    bad_lines = list(lines)
    bad_lines[which] = _corrupt(lines[which], how)
    bad = read_records(write_jsonl(tmp / "bad.jsonl", bad_lines), workers=1, check_image_files=False)
    before, after = verdicts(clean), verdicts(bad)
    for line_no, reason in before.items():
        if line_no != which + 1:
            assert after.get(line_no) == reason, (line_no, how)
    # N = R + S + U: every non-blank line is one record, valid or rejected with a reason
    n = sum(1 for ln in bad_lines if ln.strip())
    assert len(bad) == n
    valid = bad.table.column("reason").null_count
    assert len(bad.rejected()) + valid == n


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=st.lists(_record, min_size=1, max_size=6), blank_at=st.integers(0, 6))
def test_property_fast_and_exact_parsers_agree(tmp_path_factory, records, blank_at):
    """The same lines with and without a blank line in between (which sends the file to the per-record parser)
    get the same verdicts and the same ids."""
    tmp = tmp_path_factory.mktemp("agree")
    lines = [_encode(r, k) for k, r in enumerate(records)]
    fast = read_records(write_jsonl(tmp / "f.jsonl", lines), workers=1, check_image_files=False)
    spaced = lines[:blank_at] + [b""] + lines[blank_at:]
    slow = read_records(write_jsonl(tmp / "s.jsonl", spaced), workers=1, check_image_files=False)
    import re

    shift = lambda line: line + (1 if line > blank_at else 0)  # noqa: E731
    moved = lambda r: r and re.sub(r"line (\d+)", lambda m: f"line {shift(int(m.group(1)))}", r)  # noqa: E731
    f = {shift(k): moved(v) for k, v in verdicts(fast).items()}
    assert f == verdicts(slow)
    assert fast.table.column("id").to_pylist() == slow.table.column("id").to_pylist() or any(
        r["id"] is None for r in records)
