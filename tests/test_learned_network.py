"""The selector network's variance controls: zero-initialised residual branches, the ridge warm start, keeping the
initial weights when no epoch beats them, and the cross-validated ensemble (save/load included)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from selector.learned.network import (NetworkConfig, SelectorEnsemble, SubsetSelector, TrainConfig, load_network,
                                      member_folds, ridge_fit, save_network, set_linear_path, set_scores,
                                      train_ensemble, train_network)


def linear_pool(k=20, size=12, d=5, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    feats = [rng.normal(size=(size, d)).astype(np.float32) for _ in range(k)]
    labels = np.array([f.mean(0) @ w for f in feats]) + rng.normal(0, noise, k)
    return feats, labels, w


def test_zero_init_net_is_linear_and_ignores_the_other_samples():
    torch.manual_seed(0)
    model = SubsetSelector(NetworkConfig(d_in=5, d_model=8, n_heads=2)).eval()
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        expected = model.head(model.inp(x)).squeeze(-1)
        torch.testing.assert_close(model(x), expected)
        y = x.clone()
        y[0, 1:] = torch.randn(5, 5)
        torch.testing.assert_close(model(y)[0, 0], model(x)[0, 0])


def test_zero_init_branches_still_learn():
    feats, labels, _ = linear_pool()
    model, _ = train_network(feats, labels, NetworkConfig(d_in=5, d_model=8, n_heads=2),
                             TrainConfig(epochs=3, val_fraction=0.0, seed=0))
    for attn, ff in zip(model.attn, model.ff):
        assert attn.out_proj.weight.abs().sum() > 0 and ff.weight.abs().sum() > 0


def test_ridge_warm_start_is_the_ridge_model():
    feats, labels, _ = linear_pool()
    w, b = ridge_fit(feats, labels, 1.0)
    torch.manual_seed(1)
    model = SubsetSelector(NetworkConfig(d_in=5, d_model=8, n_heads=2)).eval()
    set_linear_path(model, w, b)
    with torch.no_grad():
        got = model(torch.as_tensor(feats[3])[None])[0].numpy()
    np.testing.assert_allclose(got, feats[3] @ w + b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="zero_init_residual"):
        train_network(feats, labels, NetworkConfig(d_in=5, zero_init_residual=False), TrainConfig(warm_start="ridge"))


def test_initial_weights_kept_when_no_epoch_beats_them():
    # lr 0 never moves the weights, so every epoch ties the initial loss and the initial weights must be kept.
    feats, labels, _ = linear_pool()
    model, hist = train_network(feats, labels, NetworkConfig(d_in=5, d_model=8, n_heads=2),
                                TrainConfig(epochs=3, lr=0.0, warm_start="ridge", ridge_alpha=1e-3, seed=0))
    assert hist.best_epoch == -1 and hist.best_val_loss == pytest.approx(hist.init_val_loss)
    # The ridge start is a good model here: far below the loss of predicting the training mean.
    assert hist.init_val_loss < 0.5 * hist.null_val_loss


def test_ensemble_folds_cover_every_subset_once():
    folds = member_folds(20, TrainConfig(ensemble=5, seed=3))
    assert sorted(np.concatenate(folds).tolist()) == list(range(20))
    assert member_folds(20, TrainConfig(ensemble=1)) == [None]
    with pytest.raises(ValueError):
        member_folds(3, TrainConfig(ensemble=5))


def test_ensemble_averages_members_in_label_units_and_round_trips(tmp_path):
    feats, labels, _ = linear_pool(noise=0.2)
    labels = 5.0 + 0.1 * labels  # far from zero mean, unit variance: the members' standardisation is undone
    ens, hists = train_ensemble(feats, labels, NetworkConfig(d_in=5, d_model=8, n_heads=2),
                                TrainConfig(epochs=4, ensemble=3, warm_start="ridge", seed=0))
    assert isinstance(ens, SelectorEnsemble) and len(hists) == 3
    assert len({tuple(h.val_subsets) for h in hists}) == 3
    x = torch.as_tensor(np.stack(feats[:4]))
    with torch.no_grad():
        members = [h.label_mean + h.label_std * set_scores(m, x).numpy() for m, h in zip(ens.members, hists)]
        np.testing.assert_allclose(set_scores(ens, x).numpy(), np.mean(members, axis=0), rtol=1e-5)
        assert abs(float(set_scores(ens, x).mean()) - 5.0) < 0.5
    save_network(ens, tmp_path, {"note": 1})
    loaded, meta = load_network(tmp_path)
    assert meta["note"] == 1 and isinstance(loaded, SelectorEnsemble)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ens(x))
    # Same seed, same ensemble.
    again, _ = train_ensemble(feats, labels, NetworkConfig(d_in=5, d_model=8, n_heads=2),
                              TrainConfig(epochs=4, ensemble=3, warm_start="ridge", seed=0))
    with torch.no_grad():
        torch.testing.assert_close(again(x), ens(x))


def test_network_saved_before_the_block_option_loads_as_postact(tmp_path):
    torch.manual_seed(0)
    old = SubsetSelector(NetworkConfig(d_in=4, d_model=8, n_heads=2, block="postact", zero_init_residual=False))
    save_network(old, tmp_path)
    meta = json.loads((tmp_path / "network.json").read_text())
    for key in ("block", "zero_init_residual"):
        del meta["network"][key]
    (tmp_path / "network.json").write_text(json.dumps(meta))
    loaded, _ = load_network(tmp_path)
    assert loaded.config.block == "postact"
    x = torch.randn(1, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), old(x))
