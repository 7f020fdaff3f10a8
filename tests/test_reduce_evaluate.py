"""reduce(): one verb for pruning and condensation; the one evaluation protocol; `mmselect condense`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vision.train as vtrain
from selector.core.ranking import Selection
from vision.condense import build_condenser
from vision.data import load_digits_data, split
from vision.evaluate import EvalConfig, evaluate_reduced
from vision.reduce import reduce
from vision.reduction import ReduceError, Reduction, as_image_data, select_per_class

SMALL = {"net_options": {"width": 16, "depth": 2}, "batch_real": 16, "device": "cpu"}


@pytest.fixture(scope="module")
def splits8():
    data = load_digits_data(size=8)
    labels = data.labels.numpy()
    keep = np.concatenate([np.flatnonzero(labels == c)[:30] for c in range(10)])
    return split(data.subset(keep), (0.6, 0.2, 0.2), seed=0)


def test_reduce_prunes_per_class_and_condenses_through_one_verb(splits8):
    train = splits8.train
    sel = reduce(train, 3, method="random", seed=1)
    assert isinstance(sel, Selection) and len(sel) == 30
    assert np.bincount(train.labels[sel.indices].numpy(), minlength=10).tolist() == [3] * 10
    assert sel.quotas == {c: 3 for c in range(10)}
    assert torch.equal(as_image_data(sel, train).images, train.images[sel.indices])
    red = reduce(train, 2, method="dm", iterations=1, **SMALL)
    assert isinstance(red, Reduction) and len(as_image_data(red)) == 20
    frac = reduce(train, 0.5, method="random", unit="total")
    assert len(frac) == len(train) // 2
    with pytest.raises(ReduceError):
        reduce(train, 0.5, method="dm")
    with pytest.raises(Exception, match="unknown pruning method"):
        reduce(train, 2, method="no-such-method")
    with pytest.raises(ReduceError):
        as_image_data(sel)  # a Selection needs its dataset


def test_select_per_class_keeps_the_best_of_each_class():
    from selector.core.ranking import Ranking

    labels = np.array([0, 0, 0, 1, 1, 1])
    ranking = Ranking(ids=np.arange(6), scores=np.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.8]))
    sel = select_per_class(ranking, labels, 1)
    assert sorted(sel.indices.tolist()) == [1, 5]


@pytest.mark.parametrize("init", ["random", "herding"])
def test_condenser_initialised_by_a_pruning_ranker(splits8, init):
    train = splits8.train
    params = {"features": "pixels"} if init == "herding" else {}
    red = build_condenser("dm", ipc=2, iterations=0, init=init, init_params=params, seed=0, **SMALL).condense(train)
    sel = reduce(train, 2, method=init, seed=0, **params)
    chosen = train.subset(sel.indices)
    for c in range(10):
        got = red.images[red.labels == c]
        want = chosen.images[chosen.labels == c]
        assert torch.equal(torch.sort(got.flatten(1), 0)[0], torch.sort(want.flatten(1), 0)[0])


def test_evaluation_selects_on_validation_never_test(splits8, monkeypatch):
    seen = []
    real_train = vtrain.train

    def spy(net, data, config, *, val=None, hooks=()):
        seen.append((val, config))
        return real_train(net, data, config, val=val, hooks=hooks)

    monkeypatch.setattr(vtrain, "train", spy)
    sets = [reduce(splits8.train, 2, method="random", seed=s) for s in (0, 1)]
    res = evaluate_reduced(sets, splits8, EvalConfig(models=2, epochs=4, net_options={"width": 16, "depth": 2},
                                                     device="cpu"))
    assert res.test_accuracy.shape == (2, 2) and res.train_sizes == [20, 20]
    assert all(v is splits8.val for v, _ in seen) and len(seen) == 4
    assert all(cfg.val_every == 1 for _, cfg in seen)  # epochs // 10, at least 1
    assert 0.0 <= res.mean <= 1.0 and res.std >= 0 and "±" in res.line()
    again = evaluate_reduced(sets, splits8, EvalConfig(models=2, epochs=4, net_options={"width": 16, "depth": 2},
                                                       device="cpu"))
    np.testing.assert_array_equal(res.test_accuracy, again.test_accuracy)  # seeded end to end


def test_cross_architecture_and_dsa_evaluation(splits8):
    red = reduce(splits8.train, 1, method="random")
    res = evaluate_reduced(red, splits8, EvalConfig(net="resnet18", models=1, epochs=1, dsa=True, device="cpu"))
    assert res.test_accuracy.shape == (1, 1) and res.config.net == "resnet18"


def test_condense_command_writes_set_grid_and_settings(tmp_path):
    from selector.app.cli import main

    out = tmp_path / "synth.pt"
    rc = main(["-q", "condense", "--dataset", "digits", "--image-size", "8", "--method", "dm", "--ipc", "1",
               "--iterations", "2", "--width", "16", "--depth", "2", "--device", "cpu", "--out", str(out),
               "--eval", "--eval-models", "1", "--eval-epochs", "2"])
    assert rc == 0
    red = Reduction.load(out)
    assert red.images.shape == (10, 1, 8, 8) and red.method == "dm"
    assert out.with_suffix(".png").stat().st_size > 500
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["settings"]["iterations"] == 2 and report["settings"]["seed"] == 0
    assert len(report["eval"]["test_accuracy"][0]) == 1
    assert main(["condense", "--method", "nope", "--ipc", "1", "--out", str(out)]) == 2


def test_tsne_plot(splits8, tmp_path):
    from vision.condense.plots import save_tsne
    from vision.nets import build_net

    red = reduce(splits8.train, 1, method="dm", iterations=1, **SMALL)
    net = build_net("convnet", 1, 10, 8, seed=0, width=16, depth=2)
    path = save_tsne(net, splits8.train, red.as_data(), tmp_path / "tsne.png", max_real=60)
    assert path.stat().st_size > 1000
