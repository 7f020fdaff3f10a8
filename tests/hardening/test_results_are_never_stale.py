"""Promise: cached or reused scores are used only for the exact inputs they were computed from."""
from __future__ import annotations

import os

from metrics.runner import fingerprints


def test_score_cache_notices_an_image_replaced_under_the_same_path(tmp_path, png):
    png(tmp_path / "a.png", size=(8, 8))
    before = fingerprints(["q"], ["a"], [["a.png"]], str(tmp_path))
    st = os.stat(tmp_path / "a.png")
    png(tmp_path / "a.png", size=(16, 16))
    os.utime(tmp_path / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprints(["q"], ["a"], [["a.png"]], str(tmp_path)) != before
    assert fingerprints(["q"], ["a"], [["a.png"]], str(tmp_path)) == fingerprints(["q"], ["a"], [["a.png"]],
                                                                                 str(tmp_path))


def test_judge_scores_are_recomputed_for_a_changed_image(tmp_path, png):
    """End to end through the runner's cache: a changed image under the same path is scored again."""
    import pyarrow as pa

    from metrics import build
    from metrics.runner import RunnerConfig, score_records
    from tests.fixtures.fake_judge_server import FakeJudge

    png(tmp_path / "a.png")
    table = pa.table({"id": ["x"], "instruction": ["case:ok-70"], "answer": ["a"], "images": [["a.png"]]})
    with FakeJudge() as judge:
        metric = lambda: build("judge", url=judge.url, model="m", send_images=True)  # noqa: E731
        cfg = RunnerConfig(batch_size=4, workers=0, cache_dir=tmp_path / "cache", progress=False)
        score_records(table, [metric()], cfg, images_root=str(tmp_path))
        score_records(table, [metric()], cfg, images_root=str(tmp_path))
        assert judge.requests == 1  # unchanged: from the cache
        png(tmp_path / "a.png", size=(9, 9))
        st = os.stat(tmp_path / "a.png")
        os.utime(tmp_path / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        score_records(table, [metric()], cfg, images_root=str(tmp_path))
        assert judge.requests == 2
