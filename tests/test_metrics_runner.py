"""The scoring runner: cache reuse, kill-and-resume with identical scores, sharding over 2 accelerate processes,
`mmselect score` / `select --scores`, and a trained CLIP ranking matched captions over mismatched ones."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrics import build
from metrics.clip import ClipMetric
from metrics.runner import RunnerConfig, score_records
from selector.app.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from tests.fixtures.tiny_models import build_tiny_open_clip

    return build_tiny_open_clip(tmp_path_factory.mktemp("oc") / "clip")


class Counting(ClipMetric):
    """The clip metric, counting scored records and optionally dying at batch `die_at` (a simulated kill)."""

    def __init__(self, *a, die_at: int | None = None, **kw):
        super().__init__(*a, **kw)
        self.scored, self.batches, self.die_at = 0, 0, die_at

    def score(self, batch):
        if self.die_at is not None and self.batches == self.die_at:
            raise KeyboardInterrupt("simulated kill")
        self.batches += 1
        self.scored += len(batch)
        return super().score(batch)


def _valid(digits_vqa, n=60):
    from selector.core.records import read_records

    rs = read_records(digits_vqa / "train.jsonl", images=digits_vqa, workers=1)
    return rs.valid().select(range(n)), str(rs.images_root)


def test_interrupted_run_resumes_unfinished_batches_only_with_identical_scores(digits_vqa, tiny_clip, tmp_path):
    data, root = _valid(digits_vqa)
    spec = dict(model=f"local-dir:{tiny_clip}")
    full = score_records(data, [Counting(**spec), build("length")], RunnerConfig(batch_size=8, workers=1),
                         images_root=root)
    cfg = RunnerConfig(batch_size=8, workers=1, cache_dir=tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        score_records(data, [Counting(die_at=3, **spec)], cfg, images_root=root)
    resumed_metric = Counting(**spec)
    resumed = score_records(data, [resumed_metric, build("length")], cfg, images_root=root)
    assert resumed_metric.scored == 60 - 3 * 8  # the 3 finished batches came from the cache
    assert resumed.column("clip").to_pylist() == full.column("clip").to_pylist()  # bit-identical
    assert resumed.column("id").to_pylist() == full.column("id").to_pylist()

    # a re-run computes nothing; an edited record is rescored (its batch only); new settings get a new cache
    again = Counting(**spec)
    score_records(data, [again], cfg, images_root=root)
    assert again.scored == 0
    edited = data.map(lambda r, i: {"answer": r["answer"] + " Extra." if i == 13 else r["answer"]},
                      with_indices=True)
    again = Counting(**spec)
    out = score_records(edited, [again], cfg, images_root=root)
    assert again.scored == 8 and out.column("clip")[13].as_py() != full.column("clip")[13].as_py()
    other = Counting(text_mode="truncate", **spec)
    score_records(data, [other], cfg, images_root=root)
    assert other.scored == 60


def _subset(digits_vqa, tmp_path, n=48) -> Path:
    """The first `n` records of val.jsonl (subprocess tests stay short)."""
    lines = (digits_vqa / "val.jsonl").read_text().splitlines()[:n]
    path = tmp_path / "val-subset.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _score_cli(args, **kw):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "selector.app.cli", "-q", "score", *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.processes
def test_score_command_killed_and_restarted_matches_uninterrupted(digits_vqa, tiny_clip, tmp_path):
    out = tmp_path / "scores.parquet"
    data = _subset(digits_vqa, tmp_path)
    args = [data, "--images", digits_vqa, "--metrics", "clip,length", "--out", out,
            "--clip-model", f"local-dir:{tiny_clip}", "--batch-size", 2, "--workers", 0]
    proc = _score_cli(args)
    cache = Path(f"{out}.cache")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(cache.glob("clip-*/part-*.parquet"))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    done_before = len(list(cache.glob("clip-*/part-*.parquet")))
    assert done_before >= 3
    rerun = _score_cli(args)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    table = pq.read_table(out)

    from selector.core.records import read_records

    rs = read_records(data, images=digits_vqa, workers=1)
    ref = score_records(rs.valid(), [build("clip", model=f"local-dir:{tiny_clip}"), build("length")],
                        RunnerConfig(batch_size=2, workers=0), images_root=str(rs.images_root))
    assert table.column("id").to_pylist() == ref.column("id").to_pylist()
    assert table.column("clip").to_pylist() == ref.column("clip").to_pylist()
    assert table.column("length").to_pylist() == ref.column("length").to_pylist()
    assert killed or done_before == 24  # (if the run finished before the kill, resume was trivially exact)


@pytest.mark.processes
def test_two_processes_equal_one(digits_vqa, tiny_clip, tmp_path):
    out = tmp_path / "two.parquet"
    data = _subset(digits_vqa, tmp_path)
    args = [data, "--images", digits_vqa, "--metrics", "length,clip,embed-image", "--out", out,
            "--clip-model", f"local-dir:{tiny_clip}", "--batch-size", 8, "--workers", 0, "--num-processes", 2]
    proc = _score_cli(args)
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr[-2000:]
    two = pq.read_table(out)
    cache = Path(f"{out}.cache")
    from selector.core.records import read_records

    rs = read_records(data, images=digits_vqa, workers=1)
    one = score_records(rs.valid(), [build("length"), build("clip", model=f"local-dir:{tiny_clip}"),
                                     build("embed-image", model=f"local-dir:{tiny_clip}")],
                        RunnerConfig(batch_size=8, workers=0), images_root=str(rs.images_root))
    assert two.column("id").to_pylist() == one.column("id").to_pylist()
    assert two.column("length").to_pylist() == one.column("length").to_pylist()
    np.testing.assert_allclose(two.column("clip").to_numpy(), one.column("clip").to_numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.array(two.column("embed-image").to_pylist()),
                               np.array(one.column("embed-image").to_pylist()), atol=1e-5)
    assert (cache / "job.json").is_file()


def test_select_reuses_score_table_with_missing_judge_scores(digits_vqa, tmp_path, capsys):
    from selector.core.records import read_records

    rs = read_records(digits_vqa / "val.jsonl", images=digits_vqa, workers=1)
    ids = rs.valid()["id"]
    judge = [None if i % 5 == 0 else float(i % 97) for i in range(len(ids))]
    table = pa.table({"id": ids, "judge": pa.array(judge, pa.float64()),
                      "judge__reason": [None if v is not None else "unparsable reply: 'x'" for v in judge]})
    pq.write_table(table, tmp_path / "scores.parquet")
    out = tmp_path / "sel.jsonl"
    # no judge server exists: reusing the table is the only way this can succeed
    rc = main(["-q", "select", str(digits_vqa / "val.jsonl"), "--images", str(digits_vqa), "--out", str(out),
               "--budget", "20", "--metrics", "judge", "--scores", str(tmp_path / "scores.parquet"),
               "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "none"])
    assert rc == 0
    import json

    report = json.loads(Path(f"{out}.report.json").read_text())
    chosen = set(report["selected_ids"])
    best = {ids[i] for i in np.argsort([-(v if v is not None else -1) for v in judge], kind="stable")[:20]}
    assert chosen == best


def test_trained_clip_prefers_matched_captions(tmp_path):
    """A tiny CLIP trained for a few seconds on 4 coloured squares ranks each square's own caption first."""
    import open_clip
    import torch
    import torch.nn.functional as F
    from open_clip.loss import ClipLoss
    from PIL import Image

    from tests.fixtures.tiny_models import save_open_clip_dir, tiny_open_clip_cfg

    colours = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}
    for name, rgb in colours.items():
        Image.new("RGB", (32, 32), rgb).save(tmp_path / f"{name}.png")
    torch.manual_seed(0)
    cfg = tiny_open_clip_cfg()
    model = open_clip.CLIP(**cfg)
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=cfg["text_cfg"]["context_length"])
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    x = (torch.tensor([c for c in colours.values()], dtype=torch.float32).view(4, 3, 1, 1).expand(4, 3, 32, 32)
         / 255 - mean) / std
    texts = tok([f"a {c} square" for c in colours])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP overhead on a busy 2-core machine
    try:
        for _ in range(40):
            a, b, s = model(x, texts)
            loss = ClipLoss()(F.normalize(a, dim=-1), F.normalize(b, dim=-1), s)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    save_open_clip_dir(model.eval(), cfg, tmp_path / "clip", size=32)
    names = list(colours)
    rows = [(img, cap) for img in names for cap in names]
    table = pa.table({"id": [f"{i}-{c}" for i, c in rows], "instruction": [""] * 16,
                      "answer": [f"A {c} square." for _, c in rows], "images": [[f"{i}.png"] for i, _ in rows]})
    out = score_records(table, [build("clip", model=f"local-dir:{tmp_path / 'clip'}")],
                        RunnerConfig(batch_size=16, workers=0), images_root=str(tmp_path))
    s = out.column("clip").to_numpy().reshape(4, 4)
    assert (s.argmax(axis=1) == np.arange(4)).all(), s  # each image: its own caption beats the 3 others


def test_every_builtin_metric_name_maps_to_the_module_that_registers_it():
    """`metric_class(name)` imports only BUILTIN[name]; a stale map would fail to find a metric."""
    import subprocess
    import sys

    from metrics.registry import BUILTIN, available

    assert sorted(BUILTIN) == available()
    for name in BUILTIN:  # each in a fresh process, where nothing else has registered it yet
        code = f"from metrics.registry import metric_class; print(metric_class({name!r}).name)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == name


def test_length_counts_characters_not_bytes_in_every_chunk():
    """ASCII chunks take the byte-length shortcut; a chunk with any other character is counted in code points."""
    import numpy as np
    import pyarrow as pa

    from metrics import build

    answers = pa.chunked_array([["abc", "", "a b c d"], ["größe ✓", "x"], pa.array([None, "ok"], pa.string())])
    got = build("length").score_column(pa.table({"answer": answers}))
    assert got[:5].tolist() == [3, 0, 7, 7, 1] and np.isnan(got[5]) and got[6] == 2
    assert build("length").score_column(pa.table({"answer": answers.chunk(1).slice(1)})).tolist() == [1]
