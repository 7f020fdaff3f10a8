"""`mmselect demo-models`: the demo CLIP's layout, loading through open_clip's local-dir loader, and build caching.
The full-schedule real-signal check (AUC >= 0.9) is a benchmark: `pytest -m benchmark tests/test_metrics_demo.py`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from metrics import build
from metrics.runner import RunnerConfig, score_records
from selector.app.cli import main


def test_demo_models_writes_open_clip_local_dir_and_skips_when_built(digits_vqa, tmp_path, capsys, monkeypatch):
    models = tmp_path / "models"
    args = ["demo-models", "--data", str(digits_vqa), "--out", str(models), "--only", "clip", "--clip-epochs", "1"]
    assert main(args) == 0
    clip = models / "clip"
    cfg = json.loads((clip / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["vision_cfg"]["image_size"] == 32 and (clip / "open_clip_model.safetensors").is_file()
    info = json.loads((clip / "train_info.json").read_text())
    assert info["steps"] >= 1 and np.isfinite(info["final_loss"])
    assert "trained" in capsys.readouterr().out
    mtime = (clip / "open_clip_model.safetensors").stat().st_mtime_ns
    calls = []
    import selector.app.demo.vlm

    monkeypatch.setattr(selector.app.demo.vlm, "build_vlm_base",
                        lambda data, out, *, seed=0, progress=True: calls.append((data, out, seed)) or out)
    assert main(args[:-4] + ["--clip-epochs", "1"]) == 0  # no --only: the VLM builder runs too
    assert "up to date" in capsys.readouterr().out
    assert (clip / "open_clip_model.safetensors").stat().st_mtime_ns == mtime
    assert calls == [(digits_vqa, models / "vlm-base", 0)]

    from selector.core.records import read_records

    rs = read_records(digits_vqa / "val.jsonl", images=digits_vqa, workers=1)
    out = score_records(rs.valid().select(range(8)), [build("clip", model=f"local-dir:{clip}")],
                        RunnerConfig(batch_size=8, workers=0), images_root=str(rs.images_root))
    assert out.column("clip").null_count == 0


def test_demo_models_needs_pretrain(tmp_path):
    assert main(["demo-models", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--only", "clip"]) == 2


@pytest.mark.benchmark
def test_demo_clip_separates_wrong_answers_from_clean(digits_vqa, tmp_path):
    from sklearn.metrics import roc_auc_score

    from selector.app.demo.data import load_truth
    from selector.core.records import read_records

    assert main(["-q", "demo-models", "--data", str(digits_vqa), "--out", str(tmp_path), "--only", "clip"]) == 0
    rs = read_records(digits_vqa / "train.jsonl", images=digits_vqa, workers=1)
    out = score_records(rs.valid(), [build("clip", model=f"local-dir:{tmp_path / 'clip'}")],
                        RunnerConfig(batch_size=128), images_root=str(rs.images_root))
    truth = load_truth(digits_vqa / "truth.jsonl")
    ids, s = out.column("id").to_pylist(), out.column("clip").to_numpy()
    keep = np.array([truth[i]["clean"] or truth[i]["corruption"] in ("wrong_digit", "other_image") for i in ids])
    y = np.array([truth[i]["clean"] for i in ids])
    assert roc_auc_score(y[keep], s[keep]) >= 0.9
