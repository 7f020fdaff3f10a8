"""The learned selector on generated score tables: features, subsets, network, final selection, baselines, labels."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from selector.learned.features import FeatureConfig, FeatureError, FeatureTransform
from selector.learned.final import ClusterConfig, clustered_select, spectral_groups
from selector.learned.model import LearnedSelector
from selector.learned.network import (NetworkConfig, SubsetSelector, TrainConfig, score_pool, train_network,
                                      validation_loss)
from selector.learned.subsets import make_subsets, subset_members
from selector.learned.choice import ChoiceConfig
from selector.learned.config import LabelConfig
from selector.learned.train import SelectorConfig, fit_selector
from selector.core.ranking import Ranking, select



def make_pool(n=600, seed=0, missing=0):
    """A synthetic score table: `clip` is informative about hidden quality, `length` is pure noise, image embeddings
    sit in 5 blobs. Returns (table, quality) with quality = 1 for good samples."""
    rng = np.random.default_rng(seed)
    good = (rng.random(n) < 0.6).astype(np.float64)
    clip = 25 + 6 * good + rng.normal(0, 2, n)
    length = rng.normal(100, 20, n)
    centres = rng.normal(0, 4, (5, 16))
    img = centres[rng.integers(0, 5, n)] + rng.normal(0, 0.5, (n, 16))
    txt = rng.normal(0, 1, (n, 8)) + good[:, None] * 0.3
    clip_col = clip.copy()
    if missing:
        clip_col[rng.choice(n, missing, replace=False)] = np.nan
    table = pa.table({
        "id": pa.array([f"r{i:04d}" for i in range(n)]),
        "clip": pa.array(clip_col, pa.float64()).fill_null(None),
        "length": pa.array(length),
        "embed-image": pa.FixedSizeListArray.from_arrays(pa.array(img.astype(np.float32).ravel()), 16),
        "embed-text": pa.FixedSizeListArray.from_arrays(pa.array(txt.astype(np.float32).ravel()), 8),
    })
    return table, good


def subset_labels(subsets, quality, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([quality[m].mean() + rng.normal(0, noise) for m in subset_members(subsets)])


# ---------------------------------------------------------------- features

def test_features_fit_once_and_round_trip(tmp_path):
    table, _ = make_pool(200)
    ft = FeatureTransform(FeatureConfig()).fit(table)
    x = ft.transform(table)
    assert x.shape == (200, 2 + 6 + 6) and not np.isnan(x).any()
    assert ft.feature_names[:2] == ["clip", "length"]
    # A subset is transformed with the pool's fitted PCA/normaliser, not a refit: rows match the pool's rows.
    part = table.take(pa.array([5, 17, 99]))
    np.testing.assert_allclose(ft.transform(part), x[[5, 17, 99]], rtol=1e-6)
    refit = FeatureTransform(FeatureConfig()).fit(part.slice(0, 3))
    assert not np.allclose(refit.normaliser.center, ft.normaliser.center)
    ft.save(tmp_path / "f.json")
    loaded = FeatureTransform.load(tmp_path / "f.json")
    np.testing.assert_array_equal(loaded.transform(table), x)


def test_missing_metric_is_imputed_and_flagged_never_zeroed():
    table, _ = make_pool(200, missing=10)
    ft = FeatureTransform(FeatureConfig()).fit(table)
    assert "clip:missing" in ft.feature_names
    x = ft.transform(table)
    assert not np.isnan(x).any()
    raw = table.column("clip").to_numpy(zero_copy_only=False)
    miss = np.isnan(raw)
    j, flag = ft.feature_names.index("clip"), ft.feature_names.index("clip:missing")
    np.testing.assert_array_equal(x[:, flag], miss.astype(np.float32))
    # Imputed with the fitted median: the normalised value equals (median - centre) / scale, i.e. the robust-z
    # centre (0 only because robust-z centres on the median; with min-max it is not 0).
    np.testing.assert_allclose(x[miss, j], 0.0, atol=1e-6)
    mm = FeatureTransform(FeatureConfig(normalise="minmax")).fit(table).transform(table)
    med = np.nanmedian(raw)
    expect = (med - np.nanmin(raw)) / (np.nanmax(raw) - np.nanmin(raw))
    np.testing.assert_allclose(mm[miss, j], expect, rtol=1e-5)
    assert ft.last_imputed == {"clip": 10}
    with pytest.raises(FeatureError, match="missing"):
        FeatureTransform(FeatureConfig(missing="error")).fit(table)


def test_missing_embedding_row_flagged():
    table, _ = make_pool(100)
    emb = table.column("embed-image").to_pylist()
    emb[3] = None
    table = table.set_column(table.column_names.index("embed-image"), "embed-image",
                             pa.array(emb, pa.list_(pa.float32(), 16)))
    ft = FeatureTransform(FeatureConfig()).fit(table)
    x = ft.transform(table)
    assert not np.isnan(x).any()
    f = ft.feature_names.index("embed-image:missing")
    assert x[3, f] == 1.0 and x[:, f].sum() == 1.0
    pcs = [i for i, n in enumerate(ft.feature_names) if n.startswith("image:pc")]
    np.testing.assert_allclose(x[3, pcs], 0.0, atol=1e-6)  # at the fitted PCA mean


def test_missing_column_is_a_clear_error():
    table, _ = make_pool(50)
    with pytest.raises(FeatureError, match="reward"):
        FeatureTransform(FeatureConfig(metrics=("reward",))).fit(table)
    with pytest.raises(FeatureError, match="embed-image"):
        FeatureTransform(FeatureConfig()).fit(table.drop_columns(["embed-image"]))


# ---------------------------------------------------------------- subsets

@pytest.mark.parametrize("method", ["kmeans", "random"])
def test_subsets_equal_size_and_seeded(method):
    table, _ = make_pool(307)
    emb = np.asarray(table.column("embed-image").to_pylist())
    s = make_subsets(307, 30, method, emb, seed=1)
    sizes = np.bincount(s[s >= 0])
    assert len(sizes) == 30 and (sizes == 10).all() and (s == -1).sum() == 7
    np.testing.assert_array_equal(s, make_subsets(307, 30, method, emb, seed=1))


def test_kmeans_subsets_follow_the_embedding_clusters():
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(c * 10, 0.1, (40, 4)) for c in range(3)])
    s = make_subsets(120, 3, "kmeans", emb, seed=0)
    for c in range(3):
        assert len(set(s[c * 40:(c + 1) * 40])) == 1


def test_metric_strata_hold_every_content_alike_and_still_span_quality():
    """A metric that is higher for one content (CLIP on some digits) must not put that content in one subset: with
    content groups, each subset holds each group in proportion, and the strata still order the within-group
    quality (the subsets' mean quality spans the range)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), [90, 60, 60, 43])  # 253 samples: uneven groups, a leftover
    quality = rng.normal(0, 1, len(groups))
    metric = (quality + 3.0 * groups)[:, None]  # the metric mostly says which group a sample is in
    plain = make_subsets(len(groups), 5, "metrics", metric, seed=0)
    s = make_subsets(len(groups), 5, "metrics", metric, seed=0, groups=groups)
    sizes = np.bincount(s[s >= 0])
    assert (sizes == 253 // 5).all() and (s == -1).sum() == 253 % 5
    np.testing.assert_array_equal(s, make_subsets(len(groups), 5, "metrics", metric, seed=0, groups=groups))
    for k in range(5):
        share = np.bincount(groups[s == k], minlength=4) / sizes[k]
        assert np.abs(share - np.bincount(groups) / len(groups)).max() < 0.05, share
    assert max(np.bincount(groups[plain == k], minlength=4).max() / 50 for k in range(5)) > 0.9  # without groups
    means = np.array([quality[s == k].mean() for k in range(5)])
    assert means.max() - means.min() > 2.0


# ---------------------------------------------------------------- network

def test_attention_is_within_one_subset():
    torch.manual_seed(0)
    # A non-zero init: with zero-initialised residual branches an untrained net ignores the other samples.
    model = SubsetSelector(NetworkConfig(d_in=5, d_model=8, n_layers=2, n_heads=2, zero_init_residual=False)).eval()
    x = torch.randn(3, 7, 5)
    with torch.no_grad():
        base = model(x)
        # Permuting samples ACROSS subsets (other subsets' members changed) leaves subset 0's scores unchanged.
        y = x.clone()
        y[1:] = y[1:].reshape(-1, 5)[torch.randperm(14)].reshape(2, 7, 5)
        torch.testing.assert_close(model(y)[0], base[0])
        # Scoring a subset alone gives the same as in a batch.
        torch.testing.assert_close(model(x[2:3])[0], base[2])
        # Permuting WITHIN a subset permutes its scores (and the scores depend on the subset's other members).
        p = torch.randperm(7)
        torch.testing.assert_close(model(x[:, p])[:, :], base[:, p])
        z = x.clone()
        z[0, 1:] = torch.randn(6, 5)
        assert not torch.allclose(model(z)[0, 0], base[0, 0])


def test_padding_does_not_change_scores():
    torch.manual_seed(0)
    model = SubsetSelector(NetworkConfig(d_in=4, d_model=8, n_heads=2, zero_init_residual=False)).eval()
    x = torch.randn(1, 5, 4)
    padded = torch.cat([x, torch.randn(1, 3, 4)], dim=1)
    pad = torch.tensor([[False] * 5 + [True] * 3])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, pad)[0, :5], model(x)[0])


def test_best_validation_checkpoint_is_the_one_kept(tmp_path):
    # Noisy labels unrelated to the features: the net overfits, so validation loss rises after an early minimum.
    rng = np.random.default_rng(3)
    feats = [rng.normal(0, 1, (8, 6)).astype(np.float32) for _ in range(20)]
    labels = rng.normal(0, 1, 20)
    model, hist = train_network(feats, labels, NetworkConfig(d_in=6), TrainConfig(epochs=25, lr=0.05, seed=0))
    assert hist.best_epoch < len(hist.val_loss) - 1, hist.val_loss  # the last epoch is not the best here
    assert hist.best_val_loss == min([hist.init_val_loss] + hist.val_loss)
    assert validation_loss(model, feats, labels, hist) == pytest.approx(hist.best_val_loss, rel=1e-5)
    from selector.learned.network import load_network, save_network

    save_network(model, tmp_path)
    loaded, _ = load_network(tmp_path)
    assert validation_loss(loaded, feats, labels, hist) == pytest.approx(hist.best_val_loss, rel=1e-5)


def test_score_pool_is_seeded_and_covers_every_sample():
    torch.manual_seed(0)
    model = SubsetSelector(NetworkConfig(d_in=3, d_model=8, n_heads=2)).eval()
    x = np.random.default_rng(0).normal(size=(53, 3)).astype(np.float32)
    a = score_pool(model, x, subset_size=10, passes=3, seed=4)
    assert a.shape == (53,) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, score_pool(model, x, subset_size=10, passes=3, seed=4))


# ---------------------------------------------------------------- final selection

def test_clustered_selection_exact_budget_quota_at_least_one():
    rng = np.random.default_rng(0)
    sizes = [200, 120, 60, 15, 5]
    emb = np.concatenate([rng.normal(c * 20, 0.5, (s, 8)) for c, s in enumerate(sizes)])
    n = len(emb)
    ranking = Ranking(ids=np.arange(n), scores=rng.random(n))
    sel, groups = clustered_select(ranking, emb, 37, ClusterConfig(k=5, n_neighbors=10, seed=0))
    assert len(sel) == 37 == len(set(sel.ids.tolist()))
    assert sum(sel.quotas.values()) == 37 and min(sel.quotas.values()) >= 1
    assert set(groups[sel.indices]) == set(range(5))  # every cluster contributes
    # Within each cluster, the kept items are that cluster's best scores.
    for g, q in sel.quotas.items():
        members = np.flatnonzero(groups == g)
        best = members[np.argsort(-ranking.scores[members])[:q]]
        assert set(best) == set(sel.indices[groups[sel.indices] == g])
    # Proportional: the largest cluster gets the largest quota.
    big = np.bincount(groups).argmax()
    assert sel.quotas[big] == max(sel.quotas.values())


def test_spectral_groups_seeded():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(150, 6))
    np.testing.assert_array_equal(spectral_groups(emb, ClusterConfig(k=4, seed=2)),
                                  spectral_groups(emb, ClusterConfig(k=4, seed=2)))


# ---------------------------------------------------------------- end to end on a synthetic pool

SMALL = SelectorConfig(labels=LabelConfig(n_subsets=30, subset_method="random"), choice=ChoiceConfig(model="network"),
                       train=TrainConfig(epochs=20, seed=0), clusters=ClusterConfig(k=5, seed=0), passes=4)


def test_learned_selector_learns_quality_and_is_deterministic(tmp_path):
    table, good = make_pool(600)
    from selector.learned.train import pool_subsets

    subsets = pool_subsets(table, SMALL)
    labels = subset_labels(subsets, good)
    fitted = fit_selector(table, subsets, labels, SMALL)
    # The selector and the baseline hold the very object fitted on the pool.
    assert fitted.selector.features is fitted.linear.features
    np.testing.assert_array_equal(fitted.selector.features.transform(table), fitted.features)
    ranking = fitted.selector.rank(table)
    sel = select(ranking, 100, seed=0)
    assert len(sel) == 100 and min(sel.quotas.values()) >= 1
    share = good[sel.indices].mean()
    assert share >= 0.85, share  # pool share is 0.6
    lin = select(fitted.linear.rank(table), 100, seed=0)
    assert good[lin.indices].mean() >= 0.9
    # Saved and loaded: the same transform, the same scores, the same selection.
    fitted.selector.save(tmp_path / "sel")
    loaded = LearnedSelector.load(tmp_path / "sel")
    np.testing.assert_array_equal(loaded.features.transform(table), fitted.features)
    np.testing.assert_allclose(loaded.predict(table), ranking.scores, rtol=1e-6)
    np.testing.assert_array_equal(select(loaded.rank(table), 100, seed=0).ids, sel.ids)
    # Same seed from scratch: the same selection.
    again = fit_selector(table, subsets, labels, SMALL)
    np.testing.assert_array_equal(select(again.selector.rank(table), 100, seed=0).ids, sel.ids)
    meta = json.loads((tmp_path / "sel" / "network.json").read_text())
    assert meta["inference"]["subset_size"] == 20
    manifest = json.loads((tmp_path / "sel" / "selector.json").read_text())
    assert manifest["kind"] == "network" and loaded.kind == "network"
    assert {c["name"] for c in manifest["choice"]["table"]} == {"network", "linear", "metric:clip", "metric:length",
                                                                 "mean"}


def test_baselines_rank_through_the_same_interface():
    from selector.learned.baselines import RandomRanker, single_metric_rankers

    table, good = make_pool(300)
    rankers = single_metric_rankers(table)
    assert set(rankers) == {"clip", "length"}
    top = select(rankers["clip"].rank(table), 60).indices
    assert good[top].mean() > 0.9
    r = RandomRanker(seed=3).rank(table)
    assert isinstance(r, Ranking) and len(r) == 300


# ---------------------------------------------------------------- labels

class CountingLabel:
    key = "count-v1"

    def __init__(self):
        self.calls = 0

    def __call__(self, subset_file, images_root, seed):
        self.calls += 1
        rows = [json.loads(l) for l in open(subset_file)]
        return {"label": float(np.mean([int(r["id"].split("-")[1]) % 7 for r in rows]) + 0.1 * seed),
                "n": len(rows)}


def test_labels_cached_per_subset_and_noise_measured(digits_vqa, tmp_path):
    from selector.learned.labels import genuine_labels
    from selector.core.records import read_records

    records = read_records(digits_vqa / "val.jsonl", images=digits_vqa)
    rows = np.flatnonzero(records.valid_mask())
    subsets = make_subsets(len(rows), 5, "random", seed=0)
    fn = CountingLabel()
    res = genuine_labels(records, rows, subsets, fn, tmp_path, seeds=(0, 1), progress=False)
    assert fn.calls == 10 and res.per_seed.shape == (5, 2)
    assert res.noise == pytest.approx(np.std([0, 0.1], ddof=1))
    again = genuine_labels(records, rows, subsets, fn, tmp_path, seeds=(0, 1), progress=False)
    assert fn.calls == 10  # every (subset, seed) came from the cache
    np.testing.assert_array_equal(again.labels, res.labels)
    # A different subset split is a different cache key: recomputed.
    genuine_labels(records, rows, make_subsets(len(rows), 5, "random", seed=1), fn, tmp_path, seeds=(0,),
                   progress=False)
    assert fn.calls == 15


def test_selector_folder_without_manifest_loads_as_the_old_network(tmp_path):
    """Folders saved before selector.json existed hold a network: they still load, as a network."""
    table, good = make_pool(300)
    from selector.learned.train import pool_subsets

    subsets = pool_subsets(table, SMALL)
    fitted = fit_selector(table, subsets, subset_labels(subsets, good), SMALL)
    fitted.selector.save(tmp_path / "sel")
    (tmp_path / "sel" / "selector.json").unlink()
    old = LearnedSelector.load(tmp_path / "sel")
    assert old.kind == "network"
    np.testing.assert_allclose(old.predict(table), fitted.selector.predict(table), rtol=1e-6)
    (tmp_path / "sel" / "selector.safetensors").unlink()
    from selector.core.errors import MmselectError

    with pytest.raises(MmselectError, match="not a trained selector"):
        LearnedSelector.load(tmp_path / "sel")
