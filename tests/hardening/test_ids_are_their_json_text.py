"""Promise: an id is its JSON text. 1 and "1" are different ids; integers beyond 2**53 (and 2**64) survive
exactly and come out unchanged; non-string ids are reported as JSON, never as Python reprs; automatic ids
cannot collide with explicit ones; a record with a duplicate key is rejected, not silently resolved."""
from __future__ import annotations

import json

import orjson

from selector.core.records import read_records, write_records
from tests.hardening.conftest import rec, verdicts, write_jsonl


def _conv(answer):
    return [{"from": "human", "value": "q"}, {"from": "gpt", "value": answer}]


def test_number_and_string_ids_differ(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [b'{"id": 1, "conversations": %s}' % json.dumps(_conv("n")).encode(),
                                             {"id": "1", "conversations": _conv("s")}])
    rs = read_records(src, workers=1)
    assert rs.table.column("reason").null_count == 2
    assert len(set(rs.table.column("id").to_pylist())) == 2


def test_big_integer_ids_survive_exactly(tmp_path):
    big = [9007199254740993, 9007199254740992, 2 ** 64 + 1, 2 ** 64 + 2, 123456789012345678901234567890]
    lines = [b'{"id": %d, "conversations": %s}' % (b, json.dumps(_conv(f"a{b}")).encode()) for b in big]
    for name, body in (("a.jsonl", b"\n".join(lines) + b"\n"), ("a.json", b"[" + b",\n".join(lines) + b"]")):
        src = tmp_path / name
        src.write_bytes(body)
        rs = read_records(src, workers=1)
        assert rs.table.column("reason").null_count == len(big), verdicts(rs)
        assert rs.table.column("id").to_pylist() == [str(b) for b in big]
        out = write_records(rs, list(range(len(big))), tmp_path / f"out-{name}")
        text = out.read_text()
        for b in big:
            assert str(b) in text  # written back digit for digit, not as a float


def test_non_string_ids_are_reported_as_json(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [
        b'{"id": [1, "a"], "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}',
        b'{"id": true, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "b"}]}',
        b'{"id": 7, "conversations": []}',
        b'{"id": {"k": null}, "conversations": []}', rec(5)])
    rej = {r["line"]: r for r in read_records(src, workers=1).rejected()}
    dumped = {k: orjson.dumps(v).decode() for k, v in rej.items()}
    assert '"id":7,' in dumped[3]  # the number itself
    assert "[1,\\\"a\\\"]" in dumped[1] or '[1,"a"]' in rej[1]["reason"]
    assert "true" in rej[2]["reason"] and "True" not in dumped[2]
    assert "None" not in dumped[4] and "'" not in rej[4]["reason"]


def test_auto_ids_never_collide_with_explicit_ones(tmp_path):
    no_id = {"conversations": _conv("auto")}
    src = write_jsonl(tmp_path / "a.jsonl", [no_id, {"id": "line-1", "conversations": _conv("explicit")},
                                             {"id": "line-3", "conversations": _conv("x")}, {"conversations": _conv("y")}])
    rs = read_records(src, workers=1)
    assert rs.table.column("reason").null_count == 4
    assert len(set(rs.table.column("id").to_pylist())) == 4


def test_duplicate_keys_are_rejected_with_a_reason(tmp_path):
    lines = [
        b'{"id": "a", "id": "b", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "1"}]}',
        b'{"id": "c", "conversations": [{"from": "human", "value": "q", "value": "p"}, {"from": "gpt", "value": "2"}]}',
        b'{"id": "d", "meta": {"k": 1, "k": 2}, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "3"}]}',
        b'{"id": "e", "conversations": [{"from": "human", "value": "say \\": here"}, {"from": "gpt", "value": "4"}]}',
    ]
    v = verdicts(read_records(write_jsonl(tmp_path / "a.jsonl", lines), workers=1))
    assert all("duplicate key" in v[i] for i in (1, 2, 3)), v
    assert v[4] is None  # a quote-colon inside a string is not a key


def test_duplicate_content_looks_at_the_whole_conversation(tmp_path):
    def conv(system, later):
        c = [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}, {"from": "human", "value": later},
             {"from": "gpt", "value": "a2"}]
        return ([{"from": "system", "value": system}] if system else []) + c
    rows = [{"id": "x", "conversations": conv(None, "later A")}, {"id": "y", "conversations": conv(None, "later B")},
            {"id": "z", "conversations": conv("be brief", "later A")},
            {"id": "w", "conversations": conv(None, "later A")}]
    v = verdicts(read_records(write_jsonl(tmp_path / "a.jsonl", rows), workers=1))
    assert v[1] is None and v[2] is None and v[3] is None
    assert v[4] == 'duplicate content of id "x"'
