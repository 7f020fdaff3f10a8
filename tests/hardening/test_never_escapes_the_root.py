"""Promise: every image a record names, in any field, is checked for containment under the images root."""
from __future__ import annotations

import os

import pytest

from selector.core.records import read_records
from tests.hardening.conftest import rec, verdicts, write_jsonl

CONV = b'[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a%d"}]'


@pytest.fixture
def root(tmp_path, png):
    png(tmp_path / "root" / "ok.png")
    png(tmp_path / "secret.png")
    return tmp_path / "root"


@pytest.mark.parametrize("record", [
    b'{"id": "a", "image": "ok.png", "image": "../secret.png", "conversations": ' + CONV % 1 + b"}",
    b'{"id": "b", "image": "ok.png", "images": ["../secret.png"], "conversations": ' + CONV % 2 + b"}",
    b'{"id": "c", "images": ["ok.png", "../secret.png"], "conversations": ' + CONV % 3 + b"}",
    b'{"id": "d", "image": "/etc/passwd", "conversations": ' + CONV % 4 + b"}",
    b'{"id": "e", "image": "sub/../../secret.png", "conversations": ' + CONV % 5 + b"}",
])
def test_conversation_image_fields(root, record):
    src = root / "d.jsonl"
    write_jsonl(src, [record, rec(9, image="ok.png")])
    v = verdicts(read_records(src, images=root, workers=1))
    assert v[1] is not None and v[2] is None, v


@pytest.mark.parametrize("part", [
    '{"type": "image", "image": "../secret.png"}',
    '{"type": "image_url", "image_url": {"url": "file://../secret.png"}}',
    '{"type": "image", "image": "ok.png", "path": "../secret.png"}',
])
def test_message_parts_and_top_level_images(root, part):
    msg = ('{"id": "m", "messages": [{"role": "user", "content": [%s, {"type": "text", "text": "q"}]}, '
           '{"role": "assistant", "content": "a"}]}' % part).encode()
    top = b'{"id": "t", "images": ["../secret.png"], "messages": [{"role": "user", "content": "q"}, ' \
          b'{"role": "assistant", "content": "b"}]}'
    ok = b'{"id": "o", "messages": [{"role": "user", "content": [{"type": "image", "image": "ok.png"}]}, ' \
         b'{"role": "assistant", "content": "c"}]}'
    src = write_jsonl(root / "m.jsonl", [msg, top, ok])
    v = verdicts(read_records(src, images=root, workers=1))
    assert v[1] is not None and v[2] is not None and v[3] is None, v


def test_symlink_out_of_the_root(root, tmp_path):
    os.symlink(tmp_path / "secret.png", root / "link.png")
    src = write_jsonl(root / "s.jsonl", [rec(1, image="link.png"), rec(2, image="ok.png")])
    v = verdicts(read_records(src, images=root, workers=1))
    assert "leaves the images root" in v[1] and v[2] is None
