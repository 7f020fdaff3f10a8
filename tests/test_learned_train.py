"""`train_selector` from files to a saved selector, then `run_select` with it (labels from a cheap stand-in)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.learned.features import FeatureConfig
from selector.learned.final import ClusterConfig
from selector.learned.network import TrainConfig
from selector.learned.config import LabelConfig
from selector.learned.train import SelectorConfig, TrainSelectorConfig, train_selector




def pixel_scores(data_dir, out):
    """A score table for DigitsVQA train: answer length, a noisy quality score (truth + noise, standing in for a
    good metric such as CLIP) and an 'image embedding' of 8x8 downsampled pixels."""
    from PIL import Image

    from selector.app.demo.data import load_truth
    from selector.core.records import read_records

    rs = read_records(data_dir / "train.jsonl", images=data_dir)
    t = rs.valid()
    ids, answers, images = t["id"], t["answer"], t["images"]
    emb = np.stack([np.asarray(Image.open(data_dir / im[0]).convert("L").resize((8, 8)), dtype=np.float32).ravel()
                    / 255.0 for im in images])
    truth = load_truth(data_dir / "truth.jsonl")
    rng = np.random.default_rng(0)
    quality = [float(truth[str(i)]["clean"]) + rng.normal(0, 0.5) for i in ids]
    table = pa.table({"id": ids, "length": pa.array([float(len(a)) for a in answers]), "quality": pa.array(quality),
                      "embed-image": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 64)})
    pq.write_table(table, out)
    return table


class CleanShareLabel:
    """Stand-in for fine-tuning: the share of records whose answer names the digit in its image (from truth)."""

    key = "clean-share-v1"

    def __init__(self, truth):
        self.truth, self.calls = truth, 0

    def __call__(self, subset_file, images_root, seed):
        self.calls += 1
        ids = [json.loads(l)["id"] for l in open(subset_file)]
        return {"label": float(np.mean([self.truth[i]["clean"] for i in ids]))}


def test_train_selector_then_select(digits_vqa, tmp_path):
    from selector.app.demo.data import load_truth
    from selector.learned.model import LearnedSelector
    from selector.app.pipeline import SelectConfig, run_select

    pixel_scores(digits_vqa, tmp_path / "scores.parquet")
    truth = load_truth(digits_vqa / "truth.jsonl")
    fn = CleanShareLabel(truth)
    sc = SelectorConfig(features=FeatureConfig(text_embedding=None), labels=LabelConfig(n_subsets=10, seeds=(0,)),
                        train=TrainConfig(epochs=5), clusters=ClusterConfig(k=5), passes=1)
    cfg = TrainSelectorConfig(data=digits_vqa / "train.jsonl", images=digits_vqa, scores=tmp_path / "scores.parquet",
                              out=tmp_path / "sel", selector=sc, progress=False)
    res = train_selector(cfg, fn)
    assert fn.calls == 10
    for f in ["selector.json", "features.json", "labels.json", "subsets.json", "history.json",
              "linear/selector.json", "linear/features.json"]:
        assert (tmp_path / "sel" / f).exists(), f
    manifest = json.loads((tmp_path / "sel" / "selector.json").read_text())
    assert manifest["kind"] == res.fitted.choice.chosen.split(":")[0] and manifest["choice"]["table"]
    assert manifest["signal"]["ok"] and manifest["settings"]["labels"]["n_subsets"] == 10
    sizes = np.bincount(res.subsets[res.subsets >= 0])
    assert (sizes == sizes[0]).all()
    # Re-running reuses every cached label.
    train_selector(cfg, fn)
    assert fn.calls == 10

    result = run_select(SelectConfig(input=digits_vqa / "train.jsonl", images=digits_vqa, out=tmp_path / "out.jsonl",
                                     budget=100, metrics=tuple(LearnedSelector.load(tmp_path / "sel").features
                                                                   .required_columns()),
                                     scores=tmp_path / "scores.parquet",
                                     progress=False),
                        ranker_factory=lambda c: LearnedSelector.load(tmp_path / "sel"))
    assert result.accounting.selected == 100 and result.ranking.source == "learned-selector"
    assert result.selection.quotas and min(result.selection.quotas.values()) >= 1
    assert len(result.selection.quotas) == 5
    assert sum(1 for _ in open(tmp_path / "out.jsonl")) == 100
