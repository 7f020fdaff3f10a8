"""Promise: a report page shows hostile records as text. Record text cannot add markup or script to the page, a card
never shows an image from outside the images root, and a broken or bomb image is a placeholder, not a crash."""
from __future__ import annotations

import os

import pytest

from selector.app.report.cards import clean_text, make_card, card_html, thumbnail
from selector.app.report.html import read_data
from tests.hardening.conftest import rec, write_jsonl

HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "</script><script>alert(2)</script>",
           "$\\frac{1}{0}$ & <b>", "\x00\x07\x1b[31m\u2028\ufeff", "x" * 200_000]


PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "nav", "a", "section", "table",
             "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption", "div", "b", "br", "small", "script"}


def _tags(text: str) -> list[tuple[str, list]]:
    from html.parser import HTMLParser

    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(text)
    return found


def test_hostile_records_are_text_on_the_page(tmp_path, png, cli):
    png(tmp_path / "ok.png")
    rows = [rec(i, answer=h, image="ok.png") | {"source": h[:50], "id": h[:300]} for i, h in enumerate(HOSTILE)]
    rows.append(rec(99, image="ok.png"))
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    src.write_bytes(src.read_bytes() + b'{"id": "bad", "conversations": [{"from": "human", "value": "\xff\xfe"}]}\n')
    rc, out, err = cli("analyze", src, "--workers", "1", "--out", tmp_path / "rep")
    assert rc == 0, err
    text = (tmp_path / "rep" / "index.html").read_text()
    tags = _tags(text)
    assert {t for t, _ in tags} <= PAGE_TAGS, {t for t, _ in tags} - PAGE_TAGS
    assert not [a for _, attrs in tags for a, _ in attrs if a.startswith("on")]  # no event handler attribute
    assert all(v.startswith("data:image/png;base64,") for t, attrs in tags if t == "img" for a, v in attrs
               if a == "src")
    assert [t for t, _ in tags].count("script") == 1  # the JSON block (type application/json; the CSP runs none)
    csp = [dict(a)["content"] for t, a in tags if t == "meta" and dict(a).get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "script-src" not in csp[0]
    assert "\x00" not in text and "\x1b" not in text
    assert len(text) < 2_000_000  # a 200,000-character answer is truncated
    data = read_data(text)
    assert data["counts"] == {"read": len(rows) + 1, "valid": len(rows), "rejected": 1}
    assert HOSTILE[0] in data["extremes"]["length"]["lowest"] + data["extremes"]["length"]["highest"]
    assert "record field 'source'" in data["composition"]  # a `$` in a label does not break the plot


@pytest.mark.parametrize("name,problem", [
    ("../secret.png", "leaves the images root"),
    ("/etc/passwd", "leaves the images root"),
    ("link.png", "leaves the images root"),
    ("missing.png", "missing"),
    ("fifo.png", "not a regular file"),
    ("trunc.png", "cannot decode"),
    ("text.png", "cannot decode"),
])
def test_thumbnails_stay_in_the_root_and_never_raise(tmp_path, png, name, problem):
    root = tmp_path / "root"
    png(root / "ok.png", size=(300, 200))
    png(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    os.mkfifo(root / "fifo.png")
    (root / "trunc.png").write_bytes((root / "ok.png").read_bytes()[:60])
    (root / "text.png").write_text("not an image")
    t = thumbnail(os.path.realpath(root), name)
    assert t.uri is None and problem in t.problem
    ok = thumbnail(os.path.realpath(root), "ok.png")
    assert ok.uri.startswith("data:image/png;base64,") and ok.problem is None
    card = card_html(make_card({"id": "c", "instruction": "q", "answer": "a", "images": [name, "ok.png"]}, {},
                               os.path.realpath(root)))
    assert card.count('class="ph"') == 1 and card.count("<img ") == 1


def test_a_decompression_bomb_is_a_placeholder(tmp_path, monkeypatch):
    from PIL import Image

    import selector.app.report.cards as cards

    Image.new("L", (400, 400)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    monkeypatch.setattr(cards, "MAX_PIXELS", 10_000)  # 400 x 400 is 16x over this cap
    t = thumbnail(os.path.realpath(tmp_path), "big.png")
    assert t.uri is None and "pixels" in t.problem


def test_clean_text():
    assert clean_text("a\x00b\u2028c\nd", 100) == "a\ufffdb\ufffdc\nd"
    assert clean_text("x" * 50, 10) == "x" * 10 + " … (+40 characters)"
    assert clean_text("\udcff", 10) == "?"
    card = card_html(make_card({"id": '<&">', "answer": "<b>", "instruction": "&amp;"}, {}, None))
    assert "&lt;&amp;&quot;&gt;" in card and "&lt;b&gt;" in card and "&amp;amp;" in card and "<&" not in card
