"""The demo's cached stage-1 VLM is reused only when it was built with the same recipe, seed, settings and data."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

import selector.app.demo.vlm as demo_vlm


def _data(tmp: Path) -> Path:
    d = tmp / "data"
    d.mkdir()
    for name in demo_vlm.SPLITS:
        (d / name).write_text(json.dumps({"id": name, "conversations": []}) + "\n")
    return d


@pytest.fixture
def fake_training(monkeypatch):
    """Replace the model build and training by a stub that writes a model folder and counts its calls."""
    calls = []

    def build(data_dir, out, seed, splits):
        out.mkdir(parents=True)
        return out

    def train(cfg):
        calls.append(cfg)
        model = Path(cfg.out) / "model"
        model.mkdir(parents=True)
        (model / "config.json").write_text(json.dumps({"epochs": cfg.epochs}))
        return SimpleNamespace(model_path=model, metrics={"eval": {}, "train": {}}, timings={})

    import selector.app.demo.tiny_vlm
    import finetune.trainer

    monkeypatch.setattr(selector.app.demo.tiny_vlm, "build_tiny_vlm_for", build)
    monkeypatch.setattr(finetune.trainer, "train", train)
    return calls


def test_build_is_cached_only_for_the_same_fingerprint(tmp_path, fake_training):
    data, out = _data(tmp_path), tmp_path / "vlm-base"
    demo_vlm.build_vlm_base(data, out, progress=False)
    assert len(fake_training) == 1 and demo_vlm.is_built(out, data)
    demo_vlm.build_vlm_base(data, out, progress=False)
    assert len(fake_training) == 1  # same fingerprint: reused

    other = replace(demo_vlm.STAGE1, epochs=demo_vlm.STAGE1.epochs + 1)
    assert not demo_vlm.is_built(out, data, settings=other)
    demo_vlm.build_vlm_base(data, out, progress=False, settings=other)
    assert len(fake_training) == 2 and fake_training[-1].epochs == other.epochs
    assert json.loads((out / "config.json").read_text())["epochs"] == other.epochs  # the stale build was replaced
    assert not demo_vlm.is_built(out, data)  # now stale for the default settings

    assert not demo_vlm.is_built(out, data, settings=other, seed=1)
    (data / "pretrain.jsonl").write_text("changed\n")
    assert not demo_vlm.is_built(out, data, settings=other)  # data changed
    demo_vlm.build_vlm_base(data, out, progress=False, settings=other)
    assert len(fake_training) == 3


def test_marker_without_fingerprint_is_stale(tmp_path, fake_training):
    """A marker written by the old builder (settings only, no fingerprint) forces a rebuild."""
    data, out = _data(tmp_path), tmp_path / "vlm-base"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / demo_vlm.MARKER).write_text(json.dumps({"seed": 0, "settings": {"epochs": 6.0}}))
    assert not demo_vlm.is_built(out, data)
    demo_vlm.build_vlm_base(data, out, progress=False)
    assert len(fake_training) == 1 and demo_vlm.is_built(out, data)


def test_label_cache_key_follows_the_base_model_weights(tmp_path):
    """Labels made with an old base model at the same path must not be reused after the base is rebuilt."""
    from selector.core.resolve import model_fingerprint
    from finetune.label import FinetuneLabel

    base = tmp_path / "vlm-base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"old weights")
    label = FinetuneLabel(base_model=str(base), eval_data="val.jsonl", work_dir=str(tmp_path / "w"))
    key, fp = label.key, model_fingerprint(base)
    assert label.key == key  # stable
    (base / "model.safetensors").write_bytes(b"new weights")
    assert model_fingerprint(base) != fp and label.key != key
    assert model_fingerprint("org/hub-model") == "org/hub-model"
