"""The analysis page in a real browser (headless Chromium from Debian's `chromium` package): it loads with no
console error, every image decodes, the main sections are there; a screenshot goes into the test's tmp folder."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.browser import INSTALL_HINT, check_page, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None, reason=INSTALL_HINT)


def test_analyze_page_in_chromium(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from selector.app.cli import main

    rng = np.random.default_rng(0)
    rows = []
    (tmp_path / "img").mkdir()
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        rows.append({"id": f"r{i}", "image": f"img/{i}.png", "source": ["a", "b", "c"][i % 3],
                     "conversations": [{"from": "human", "value": f"<image>\nwhat is {i}?"},
                                       {"from": "gpt", "value": "word " * (1 + i % 17)}]})
    rows.append({**rows[0], "id": "gone", "image": "img/missing.png"})
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(60)], "clip": rng.normal(size=60),
                             "embed-image": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 8)}),
                   tmp_path / "s.parquet")
    assert main(["-q", "analyze", str(src), "--scores", str(tmp_path / "s.parquet"), "--metrics",
                 "length,clip,embed-image", "--workers", "1", "--out", str(tmp_path / "rep")]) == 0
    shot = tmp_path / "page.png"
    result = check_page(tmp_path / "rep" / "index.html", shot)
    assert result.errors == []
    assert len(result.images) > 40 and result.broken_images == []
    assert result.sections == ["overview", "composition", "metrics", "correlation", "extremes", "map"]
    assert result.title.startswith("mmselect analyze")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
