"""Promise: a rejection reason says what was wrong in whole words. A long offending value is shortened in its
middle (its length counted), never the message; and the reason's kind (counted in the report and in the
'rejected for the same reason' error) is whole words of the message, never a value or a message cut in half."""
from __future__ import annotations

import pytest

from selector.core.formats import shown
from selector.core.records import read_records, reason_kind
from tests.hardening.conftest import rec, write_jsonl


def test_a_long_value_is_shortened_in_the_middle():
    text = shown("a" * 500 + "TAIL")
    assert len(text) < 160 and text.startswith("'aaa") and text.endswith("TAIL'") and "[386 characters]" in text
    assert shown("short") == "'short'" and shown({"k": 1}) == '{"k":1}'


@pytest.fixture
def hostile(tmp_path):
    conv = rec(0)["conversations"]
    (tmp_path / "img").mkdir()
    return write_jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "image": "../" * 60 + "x" * 300 + ".png", "conversations": conv},
        {"id": "b", "image": "/" + "y" * 3000, "conversations": conv},
        {"id": "c", "conversations": [{"from": "h" * 500, "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"id": {"nested": "x" * 400}, "conversations": conv},
        {"id": "e", "image": "img/" + "m" * 400 + ".png", "conversations": conv},
    ])


def test_reasons_end_with_what_was_wrong(hostile, tmp_path):
    reasons = read_records(hostile, images=tmp_path, workers=1).table.column("reason").to_pylist()
    assert all(r is not None and len(r) < 260 for r in reasons), reasons
    assert reasons[0].endswith("leaves the images root") and reasons[1].endswith("leaves the images root")
    assert reasons[2].startswith("unknown role 'hhh") and reasons[2].endswith("' (turn 1)")
    assert reasons[3].startswith('id must be a string or a number, got {"nested":"xxx') and reasons[3].endswith('"}')
    assert "File name too long" in reasons[4]  # the OS's words, not only "OSError"
    assert [reason_kind(r) for r in reasons] == [
        "image path leaves the images root", "image path leaves the images root", "unknown role",
        "id must be a string or a number", "invalid image path"]


@pytest.mark.parametrize("reason, kind", [
    ('id must be a string or a number, got {"a":"b: c"}', "id must be a string or a number"),
    ("image path 'x: y' leaves the images root", "image path leaves the images root"),
    ("image truncated or corrupt (OSError: broken data stream): img/1.png", "image truncated or corrupt"),
    ("image file unreadable (permission denied): a.png", "image file unreadable (permission denied)"),
    ("member 'a.json' appears twice", "member appears twice"),
    ("invalid JSON: unexpected character: line 1 column 5 (char 4)", "invalid JSON"),
    ("duplicate id (first seen at line 3)", "duplicate id"),
])
def test_reason_kinds_are_whole_words(reason, kind):
    assert reason_kind(reason) == kind


def test_the_same_reason_error_names_the_whole_kind(tmp_path, cli):
    src = write_jsonl(tmp_path / "d.jsonl", [rec(i, image=f"../../outside/{i}.png") for i in range(6)])
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "2")
    assert rc == 2 and "rejected for the same reason: image path leaves the images root" in err, err


def test_an_empty_image_file_is_called_empty(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0.png").write_bytes(b"")
    src = write_jsonl(tmp_path / "d.jsonl", [rec(0, image="img/0.png")])
    reasons = read_records(src, workers=1).table.column("reason").to_pylist()
    assert reasons == ["image file empty (0 bytes): img/0.png"]


def test_an_image_url_is_called_a_url(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [rec(0, image="http://example.com/x.png"), rec(1, image="s3://b/k.jpg")])
    reasons = read_records(src, workers=1).table.column("reason").to_pylist()
    assert all("is a URL; only local files are read" in r for r in reasons), reasons
    assert reason_kind(reasons[0]).startswith("image path is a URL; only local files are read")


def test_a_turn_that_holds_no_text_says_so(tmp_path):
    """A list or number where a turn's text belongs used to read as "empty answer"; an empty string still does."""
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"id": "list", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ["a", "b"]}]},
        {"id": "num", "conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "a"}]},
        {"id": "empty", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]},
        {"id": "ok", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    ])
    t = read_records(path, images=tmp_path, workers=1).table
    reasons = dict(zip(t.column("id").to_pylist(), t.column("reason").to_pylist()))
    assert reasons == {"list": "turn 2 value is list, not text", "num": "turn 1 value is int, not text",
                       "empty": "empty answer (turn 2)", "ok": None}
