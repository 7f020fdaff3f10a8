"""The `influence` metric: per-sample gradients and their projection against hand-computed ones, the ICONS vote,
and, end to end on a tiny LLaVA, that a pool record repeated in the target set ranks first."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from finetune.gradients import (AdamState, Projector, adam_direction, linear_per_sample_gradients, mean_cosine,
                               per_sample_gradients, vote)


def _one_layer(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Linear(5, 3, bias=False)


def test_projected_per_sample_gradient_of_a_linear_layer_equals_the_hand_computed_one():
    """Loss_i = 0.5 * ||W x_i - y_i||^2 has gradient (W x_i - y_i) x_i^T; projected by the seeded matrix it must
    match both the one-backward-per-sample path and the batched (hook) path."""
    layer = _one_layer()
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(4, 5)), dtype=torch.float32)
    y = torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float32)
    W = layer.weight.detach()
    hand = torch.stack([torch.outer(W @ x[i] - y[i], x[i]).reshape(-1) for i in range(4)])
    proj = Projector(15, dim=6, seed=3)
    expected = (hand @ proj.matrix()).numpy()

    def loss_of(i):
        return 0.5 * ((layer(x[i]) - y[i]) ** 2).sum()

    looped = per_sample_gradients(loss_of, range(4), [layer.weight], proj)
    np.testing.assert_allclose(looped, expected, rtol=1e-5, atol=1e-6)
    batched = linear_per_sample_gradients(layer, [layer.weight], lambda: 0.5 * ((layer(x) - y) ** 2).sum(dim=1))
    np.testing.assert_allclose(proj(batched).numpy(), expected, rtol=1e-5, atol=1e-6)
    # Sequences (batch, tokens, features): the per-sample gradient sums over the sample's tokens only.
    xs = torch.tensor(rng.normal(size=(2, 3, 5)), dtype=torch.float32)
    seq = linear_per_sample_gradients(layer, [layer.weight], lambda: layer(xs).pow(2).sum(dim=(1, 2)))
    for b in range(2):
        hand_b = sum(torch.outer(2 * W @ xs[b, t], xs[b, t]) for t in range(3)).reshape(-1)
        np.testing.assert_allclose(seq[b].numpy(), hand_b.numpy(), rtol=1e-5, atol=1e-5)


def test_projection_is_seeded_and_keeps_cosines():
    a, b = Projector(3000, 512, seed=7), Projector(3000, 512, seed=7)
    assert torch.equal(a.matrix(), b.matrix()) and not torch.equal(a.matrix(), Projector(3000, 512, seed=8).matrix())
    assert set(torch.unique(torch.round(a.matrix() * 512 ** 0.5)).tolist()) == {-1.0, 1.0}  # Rademacher
    rng = np.random.default_rng(0)
    u = rng.normal(size=3000)
    v = u + 0.5 * rng.normal(size=3000)
    true = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
    pu, pv = a(torch.tensor(np.stack([u, v]))).numpy()
    assert abs(pu @ pv / np.linalg.norm(pu) / np.linalg.norm(pv) - true) < 0.1
    assert Projector(10, 8192).identity  # more dims than weights: no projection


def test_adam_direction_matches_one_adamw_step():
    """LESS's Adam feature is the step AdamW takes from the saved moments (no bias correction, no decay)."""
    g = torch.tensor([0.5, -2.0, 0.0])
    state = AdamState(torch.tensor([0.1, 0.1, -0.2]), torch.tensor([0.04, 1.0, 0.01]))
    m = 0.9 * state.exp_avg + 0.1 * g
    v = 0.999 * state.exp_avg_sq + 0.001 * g * g
    torch.testing.assert_close(adam_direction(g, state), m / (v.sqrt() + 1e-8))


def test_vote_counts_groups_above_their_percentile_and_breaks_ties_below_one_vote():
    s = np.array([[0.9, 0.9], [0.9, 0.0], [0.0, 0.9], [0.1, 0.1], [0.2, 0.2], [np.nan, 0.5]])
    out = vote(s, percentile=50)
    assert np.isnan(out[5])
    assert out[0] > out[1] and out[0] > out[2] and out[0] >= 2  # two votes
    assert np.floor(out[1]) == 1 and np.floor(out[3]) == 0 and out[4] > out[3]
    assert np.allclose(mean_cosine(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[3.0, 0.0], [1.0, 1.0]])),
                       [(1 + 2 ** -0.5) / 2, (0 + 2 ** -0.5) / 2])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from finetune import build_tiny_model
    from selector.app.demo.data import DigitsVQAConfig, build_digits_vqa

    root = tmp_path_factory.mktemp("digits")
    build_digits_vqa(root, DigitsVQAConfig(n_pretrain=10, n_train=24, n_val=6, n_test=6, noise=0.3, seed=3))
    texts = [line for name in ("pretrain", "train", "val", "test") for line in (root / f"{name}.jsonl").open()]
    model = build_tiny_model("llava", root / "vlm", texts=texts, seed=0)
    return root, model


@pytest.mark.slow
def test_a_pool_record_repeated_in_the_target_set_ranks_first(digits, tmp_path):
    from finetune.influence import InfluenceMetric
    from metrics.runner import RunnerConfig, score_records
    from selector.core.records import read_records

    root, model = digits
    pool = [json.loads(line) for line in (root / "train.jsonl").open()]
    twin = dict(pool[13], id="target-twin")
    (tmp_path / "target.jsonl").write_text(json.dumps(twin) + "\n")
    metric = InfluenceMetric(model=str(model), target=str(tmp_path / "target.jsonl"), pool=str(root / "train.jsonl"),
                             images=str(root), target_images=str(root), cache_dir=str(tmp_path / "cache"),
                             progress=False, adam=False, warmup_share=0.2, warmup_epochs=1, dim=256)
    records = read_records(root / "train.jsonl", images=root, dedup=False)
    table = score_records(records.valid(), [metric], RunnerConfig(cache_dir=tmp_path / "scores", progress=False),
                          images_root=str(root))
    scores = dict(zip(table.column("id").to_pylist(), table.column("influence").to_pylist()))
    twins = {r["id"] for r in pool
             if r["conversations"] == pool[13]["conversations"] and r["image"] == pool[13]["image"]}
    best = max(scores, key=scores.get)
    assert best in twins and scores[best] == pytest.approx(1.0, abs=1e-4)
    # Cached features: a second metric object with the same settings reads them instead of recomputing.
    parts = sorted((tmp_path / "cache").glob("influence-features-*/pool/part-*.npy"))
    assert parts and (tmp_path / "cache").glob("influence-features-*/warmup/adapter")
    again = InfluenceMetric(model=str(model), target=str(tmp_path / "target.jsonl"), pool=str(root / "train.jsonl"),
                            images=str(root), target_images=str(root), cache_dir=str(tmp_path / "cache"),
                            progress=False, adam=False, warmup_share=0.2, warmup_epochs=1, dim=256)
    mtimes = [p.stat().st_mtime_ns for p in parts]
    again.setup("cpu")
    assert [p.stat().st_mtime_ns for p in parts] == mtimes
    assert again._scores["train-00013"][0] == pytest.approx(scores["train-00013"])
    # The gradient PCA column reuses the same cached features, and identical records get identical rows.
    with_grad = InfluenceMetric(model=str(model), target=str(tmp_path / "target.jsonl"),
                                pool=str(root / "train.jsonl"), images=str(root), target_images=str(root),
                                cache_dir=str(tmp_path / "cache"), progress=False, adam=False, warmup_share=0.2,
                                warmup_epochs=1, dim=256, gradient_dims=3)
    table = score_records(records.valid(), [with_grad], RunnerConfig(cache_dir=tmp_path / "scores", progress=False),
                          images_root=str(root))
    assert [p.stat().st_mtime_ns for p in parts] == mtimes
    grads = dict(zip(table.column("id").to_pylist(), table.column("influence__grad").to_pylist()))
    assert all(len(g) == 3 for g in grads.values())
    rows = np.array([grads[r] for r in scores])
    assert np.allclose(rows.mean(axis=0), 0, atol=1e-3) and (rows.std(axis=0) > 1e-3).all()  # centred components
    key = {r["id"]: json.dumps([r["conversations"], r["image"]]) for r in pool}
    same = [(a, b) for a in scores for b in scores if a < b and key[a] == key[b]]
    assert same and all(np.allclose(grads[a], grads[b], atol=1e-4) for a, b in same)


def test_missing_settings_are_a_one_line_error_naming_the_flag_and_cli_flags_reach_the_metric(tmp_path, monkeypatch):
    import argparse

    from finetune.influence import InfluenceMetric
    from selector.app.commands.score import add_parser, metric_params
    from selector.core.errors import MmselectError

    with pytest.raises(MmselectError, match="--influence-target"):
        InfluenceMetric(model="M", pool="pool.jsonl")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pool.jsonl").write_text("{}\n")
    sub = argparse.ArgumentParser().add_subparsers()
    ns = add_parser(sub, "score").parse_args(["pool.jsonl", "--out", "s.parquet", "--metrics", "influence,ifd",
                                              "--influence-model", "M", "--influence-groups", "task",
                                              "--ifd-model", "B"])
    params = metric_params(ns, None)
    assert params["influence"]["model"] == "M" and params["influence"]["groups"] == "task"
    assert params["influence"]["pool"].endswith("pool.jsonl") and params["ifd"]["model"] == "B"


def test_gradient_pca_keeps_the_direction_the_gradients_vary_along():
    """Gradients spread along one direction (plus small noise) in 64 dims: the first component recovers the
    position along it; asking for more components than the pool allows gives what it allows."""
    from finetune.influence import gradient_pca

    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    axis = rng.normal(size=64)
    x = np.outer(t, axis) + 0.01 * rng.normal(size=(50, 64))
    pcs = gradient_pca(x, 4, seed=0)
    assert pcs.shape == (50, 4) and pcs.dtype == np.float32
    assert abs(np.corrcoef(pcs[:, 0], t)[0, 1]) > 0.999
    assert np.array_equal(pcs, gradient_pca(x, 4, seed=0))
    assert gradient_pca(x[:3], 8).shape == (3, 2)


def test_an_extra_embedding_column_becomes_selector_features_and_survives_save_and_load(tmp_path):
    import pyarrow as pa

    from selector.learned.features import FeatureConfig, FeatureTransform

    rng = np.random.default_rng(1)
    grad = rng.normal(size=(30, 5))
    table = pa.table({"id": [f"r{i}" for i in range(30)], "length": rng.normal(size=30),
                      "influence__grad": pa.array(grad.tolist())})
    cfg = FeatureConfig(image_embedding=None, text_embedding=None, extra_embeddings=("influence__grad",),
                        extra_dims=2)
    ft = FeatureTransform(cfg).fit(table)
    assert ft.metric_names == ["length"]  # a vector column is never a scalar metric
    assert ft.feature_names == ["length", "influence__grad:pc0", "influence__grad:pc1"]
    assert "influence__grad" in ft.required_columns()
    ft.save(tmp_path / "f.json")
    again = FeatureTransform.load(tmp_path / "f.json")
    assert again.config.extra_embeddings == ("influence__grad",)
    assert np.allclose(again.transform(table), ft.transform(table))


def test_train_selector_flag_names_the_extra_embedding_and_score_flag_reaches_the_metric(tmp_path, monkeypatch):
    import argparse

    from selector.app.commands.score import add_parser as score_parser, metric_params
    from selector.app.commands.train_selector import add_parser, selector_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pool.jsonl").write_text("{}\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "s.parquet")
    sub = argparse.ArgumentParser().add_subparsers()
    ns = add_parser(sub, "train-selector").parse_args(
        ["--data", "pool.jsonl", "--scores", "s.parquet", "--out", "SEL", "--eval-data", "pool.jsonl",
         "--base-model", "M", "--extra-embedding", "influence__grad",
         "--pca-dims", "4"])
    features = selector_config(ns).features
    assert features.extra_embeddings == ("influence__grad",) and features.extra_dims == 4
    ns = score_parser(sub, "score").parse_args(["pool.jsonl", "--out", "s.parquet", "--metrics", "influence",
                                                "--influence-gradient-dims", "16"])
    assert metric_params(ns, None)["influence"]["gradient_dims"] == 16


def test_the_per_task_vote_reuses_the_plain_runs_gradient_features(tmp_path):
    """Groups change the scores (their column) but not the gradients: both runs share one feature cache."""
    from finetune.influence import InfluenceMetric

    for name in ("pool.jsonl", "val.jsonl"):
        (tmp_path / name).write_text("{}\n")
    kw = dict(model="M", target=str(tmp_path / "val.jsonl"), pool=str(tmp_path / "pool.jsonl"),
              cache_dir=str(tmp_path / "cache"), progress=False)
    plain, vote = InfluenceMetric(**kw), InfluenceMetric(**kw, groups="task")
    assert plain.config_hash() != vote.config_hash()
    assert plain._work_dir() == vote._work_dir()
    assert InfluenceMetric(**kw, dim=512)._work_dir() != plain._work_dir()
