"""Promise: a wrong JSON type in any field of a record (a number, list, object, bool or null where text is
expected, and the reverse) costs that record with a reason, never the run (found by the hostile-input sweep:
an OpenAI text part holding a number stopped `score` and `select` with a TypeError)."""
from __future__ import annotations

import pytest

from selector.core.records import read_records
from tests.hardening.conftest import write_jsonl

ODD = [7, 1.5, True, None, [], ["x"], {}, {"a": 1}, ""]


def _msg(i: int, user_content) -> dict:
    return {"id": f"m{i}", "messages": [{"role": "user", "content": user_content},
                                        {"role": "assistant", "content": f"answer {i}"}]}


def _shapes(odd) -> list:
    """One record per place a message record can hold `odd`."""
    return [
        _msg(10, [{"type": "text", "text": odd}]),
        _msg(11, [{"type": odd, "text": "q"}]),
        _msg(12, [{"type": "image", "image": odd}]),
        _msg(13, [{"type": "image_url", "image_url": {"url": odd}}]),
        _msg(14, odd),
        {"id": "m15", "messages": [{"role": odd, "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"id": "m16", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": odd}]},
        {**_msg(17, "q"), "images": odd},
        {**_msg(18, "q"), "image": odd},
        {"id": "m19", "messages": odd},
    ]


@pytest.mark.parametrize("odd", ODD, ids=[repr(o) for o in ODD])
def test_messages_with_a_wrong_type_anywhere_cost_one_record(tmp_path, odd):
    rows = [_msg(i, f"question {i}") for i in range(3)] + _shapes(odd)
    rs = read_records(write_jsonl(tmp_path / "d.jsonl", rows), workers=1, check_image_files=False)
    reasons = rs.table.column("reason").to_pylist()
    assert len(reasons) == len(rows) and reasons[:3] == [None] * 3
    text_part = reasons[3]  # a text part must hold text (or nothing)
    assert (text_part is None) == (odd is None or isinstance(odd, str)), text_part


def _conv_shapes(odd) -> list:
    """One record per place a LLaVA record can hold `odd`."""
    turn = lambda **kw: {"id": f"c{len(kw)}", "conversations": [{"from": "human", "value": "q"},  # noqa: E731
                                                                 {"from": "gpt", "value": "a"}, kw]}
    return [
        {"id": "c1", "conversations": [{"from": odd, "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"id": "c2", "conversations": [{"role": odd, "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"id": "c3", "conversations": [{"from": "human", "value": odd}, {"from": "gpt", "value": "a"}]},
        {"id": "c4", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": odd}]},
        {"id": "c5", "conversations": odd},
        {"id": "c6", "conversations": [odd, {"from": "gpt", "value": "a"}]},
        {"id": "c7", "image": odd, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "b"}]},
        {"id": odd, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "c"}]},
        turn(**{"from": odd, "value": "z"}),
    ]


@pytest.mark.parametrize("odd", ODD, ids=[repr(o) for o in ODD])
@pytest.mark.parametrize("mixed", [True, False], ids=["among-good", "alone"])
def test_conversations_with_a_wrong_type_anywhere_cost_one_record(tmp_path, odd, mixed):
    """Alone: every line of the file is hostile, so the Arrow fast path sees only odd columns."""
    good = [{"id": f"g{i}", "conversations": [{"from": "human", "value": f"q {i}"}, {"from": "gpt", "value": f"a {i}"}]}
            for i in range(3)]
    rows = (good if mixed else []) + _conv_shapes(odd)
    rs = read_records(write_jsonl(tmp_path / "d.jsonl", rows), workers=1, check_image_files=False)
    reasons = rs.table.column("reason").to_pylist()
    assert len(reasons) == len(rows)
    if mixed:
        assert reasons[:3] == [None] * 3
    assert reasons[-len(_conv_shapes(odd)):][0] is not None  # a role that is not a role string
