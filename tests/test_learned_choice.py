"""Labels that carry no signal are refused; the model that predicts held-out subset labels best is the one kept."""
from __future__ import annotations

import json

import numpy as np
import pytest

from selector.learned.choice import (ChoiceConfig, candidate_table, choose, line_fit_predict, out_of_fold,
                                     permutation_p)
from selector.learned.signal import aggregate, label_signal


def test_signal_test_passes_real_spread_and_refuses_seed_noise():
    rng = np.random.default_rng(0)
    quality = rng.normal(0, 1.0, 20)
    real = quality[:, None] + rng.normal(0, 0.3, (20, 2))
    sig = label_signal(real, alpha=0.01)
    assert sig.ok and sig.p_value < 1e-6 and sig.spread > sig.noise
    # Labels that differ across subsets no more than across seeds of the same subset: refused at every seed tried.
    refused = [not label_signal(np.random.default_rng(s).normal(0, 0.3, (20, 2)), alpha=0.01).ok for s in range(20)]
    assert sum(refused) >= 18
    noise = np.random.default_rng(1).normal(0, 0.3, (20, 2))
    sig = label_signal(noise, alpha=0.01)
    assert not sig.ok and "labels carry no signal" in sig.refusal() and "eval_loss" in sig.refusal()


def test_a_seed_that_shifts_every_subset_is_not_noise():
    """Every subset is fine-tuned with the same seeds, so a seed that lowers every label is a block effect."""
    rng = np.random.default_rng(2)
    quality = np.linspace(0, 0.1, 20)
    per_seed = quality[:, None] + np.array([0.0, -0.3]) + rng.normal(0, 0.01, (20, 2))
    sig = label_signal(per_seed, scale="none")
    assert sig.ok and sig.noise < 0.02
    from scipy.stats import f_oneway

    assert f_oneway(*per_seed).pvalue > 0.5  # a one-way test would call these labels noise


def test_one_blown_up_run_does_not_hide_an_order_the_seeds_agree_on():
    """Seeds that rank the subsets alike, one run of which blew up (a loss far off its other seed's): on the raw
    scale that run is all the noise and the labels are refused; on the fitted (rank) scale they pass. Shuffled
    labels still pass the rank test only at about its level."""
    rng = np.random.default_rng(3)
    quality = np.linspace(-1.1, -1.0, 20)
    per_seed = quality[:, None] + rng.normal(0, 0.01, (20, 2))
    per_seed[4, 1] = -3.0
    assert not label_signal(per_seed, alpha=0.01, scale="none").ok
    assert label_signal(per_seed, alpha=0.01).ok
    shuffled = [label_signal(np.column_stack([rng.permutation(per_seed[:, j]) for j in range(2)])).ok
                for _ in range(200)]
    assert np.mean(shuffled) < 0.04


def test_identical_labels_are_refused_and_one_seed_is_untested():
    assert not label_signal(np.full((10, 2), 0.5)).ok
    one = label_signal(np.arange(10.0)[:, None])
    assert one.ok and not one.measured and np.isnan(one.p_value)


def test_median_label_resists_a_blown_up_run():
    per_seed = np.array([[1.0, 1.1, -5.0], [0.5, 0.4, 0.6]])
    np.testing.assert_allclose(aggregate(per_seed, "median"), [1.0, 0.5])
    assert aggregate(per_seed, "mean")[0] < 0  # the mean is dragged down by the one bad run
    with pytest.raises(ValueError, match="unknown label aggregate"):
        aggregate(per_seed, "max")


def _subsets(k=24, d=4, seed=0):
    """Subset mean features: column 0 is a metric that drives the label, the others are noise."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d))
    folds = [np.arange(i, k, 4) for i in range(4)]
    return rng, means, folds


def test_single_metric_wins_when_it_alone_explains_the_labels():
    rng, means, folds = _subsets()
    labels = 2.0 * means[:, 0] + rng.normal(0, 0.1, len(means))
    cfg = ChoiceConfig()
    table = candidate_table(means, labels, folds, ["clip", "length"], None, cfg)
    by = {c.name: c.cv_r2 for c in table}
    assert by["metric:clip"] > 0.9 and by["metric:length"] < 0.2 and by["mean"] == 0.0
    choice = choose(table, folds, cfg, permutation_p(means, labels, folds, ["clip", "length"], cfg))
    assert choice.chosen == "metric:clip" and choice.p_value < 0.01


def test_linear_wins_when_the_label_needs_several_features():
    rng, means, folds = _subsets()
    labels = means[:, 0] - means[:, 1] + means[:, 2] + rng.normal(0, 0.1, len(means))
    cfg = ChoiceConfig()
    table = candidate_table(means, labels, folds, ["clip", "length"], None, cfg)
    assert choose(table, folds, cfg, permutation_p(means, labels, folds, ["clip", "length"], cfg)).chosen == "linear"


def test_network_must_beat_the_others_by_the_margin():
    rng, means, folds = _subsets()
    labels = 2.0 * means[:, 0] + rng.normal(0, 1.0, len(means))
    cfg = ChoiceConfig()
    best = candidate_table(means, labels, folds, ["clip"], None, cfg)
    # A network whose out-of-fold predictions are the best metric's, give or take: not chosen.
    near = out_of_fold(line_fit_predict, means[:, [0]], labels, folds) + 0.001 * rng.normal(size=len(labels))
    table = candidate_table(means, labels, folds, ["clip"], near, cfg)
    assert choose(table, folds, cfg, 0.001).chosen != "network"
    table = candidate_table(means, labels, folds, ["clip"], labels.copy(), cfg)  # perfect out-of-fold predictions
    assert max(c.cv_r2 for c in best if c.name != "network") < 0.95
    assert choose(table, folds, cfg, 0.001).chosen == "network"


def test_shuffled_labels_are_refused():
    rng, means, folds = _subsets()
    labels = 2.0 * means[:, 0] + rng.normal(0, 0.1, len(means))
    cfg = ChoiceConfig()
    refused = 0
    for s in range(10):
        shuffled = np.random.default_rng(100 + s).permutation(labels)
        table = candidate_table(means, shuffled, folds, ["clip", "length"], None, cfg)
        choice = choose(table, folds, cfg, permutation_p(means, shuffled, folds, ["clip", "length"], cfg))
        refused += choice.chosen == "mean"
    assert refused >= 9


def test_train_selector_refuses_noise_labels_and_leaves_no_selector(digits_vqa, tmp_path):
    """End to end with a stand-in label function whose labels are seed noise: refused, exit code 2 from `select`."""
    from selector.core.errors import MmselectError
    from selector.learned.config import LabelConfig, SelectorConfig
    from selector.learned.features import FeatureConfig
    from selector.learned.model import LearnedSelector
    from selector.learned.signal import NoSignalError
    from selector.learned.train import TrainSelectorConfig, train_selector
    from tests.test_learned_train import pixel_scores

    class NoiseLabel:
        key = "noise-v1"

        def __call__(self, subset_file, images_root, seed):
            ids = sorted(json.loads(line)["id"] for line in open(subset_file))
            rng = np.random.default_rng([seed, int(ids[0].split("-")[1])])
            return {"label": float(rng.normal())}

    pixel_scores(digits_vqa, tmp_path / "scores.parquet")
    out = tmp_path / "sel"
    (out / "linear").mkdir(parents=True)
    (out / "selector.json").write_text("{}")  # a stale selector from an earlier run must not survive a refusal
    sc = SelectorConfig(features=FeatureConfig(text_embedding=None), labels=LabelConfig(n_subsets=10))
    cfg = TrainSelectorConfig(data=digits_vqa / "train.jsonl", images=digits_vqa, scores=tmp_path / "scores.parquet",
                              out=out, selector=sc, progress=False)
    with pytest.raises(NoSignalError, match="labels carry no signal"):
        train_selector(cfg, NoiseLabel())
    assert not (out / "selector.json").exists() and (out / "refused.json").exists()
    assert json.loads((out / "refused.json").read_text())["signal"]["ok"] is False
    with pytest.raises(MmselectError, match="refused"):
        LearnedSelector.load(out)
