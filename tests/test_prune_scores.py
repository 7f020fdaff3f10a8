"""Forgetting, EL2N, GraNd and curvature against their definitions, and every ranker through `select`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selector.core.errors import MmselectError
from selector.core.ranking import Ranker, select
from vision.data import load_digits_data, split
from vision.nets import build_net
from vision.prune import RANKERS, ForgettingTracker, build_ranker, curvature_scores, el2n_scores, grand_scores
from vision.prune.base import make_ranking
from vision.train import BatchInfo, TrainConfig, evaluate, train



@pytest.fixture(scope="module")
def splits8():
    return split(load_digits_data(size=8), seed=0)


@pytest.fixture(scope="module")
def trained8(splits8):
    net = build_net("convnet", 1, 10, 8, seed=0, width=16, depth=2)
    res = train(net, splits8.train, TrainConfig(epochs=12, batch_size=64, lr=0.05, device="cpu"))
    assert evaluate(res.net, splits8.test).accuracy > 0.9
    return res.net


def _batch(epoch, idx, predicted, labels):
    logits = F.one_hot(torch.tensor(predicted), 3).float()
    return BatchInfo(epoch, epoch, torch.tensor(idx), logits, torch.tensor(labels), torch.zeros(len(idx)))


def test_forgetting_counts_flips_and_never_learned_is_most_forgotten():
    tracker = ForgettingTracker(4)
    # example 0: right, wrong, right, wrong -> 2 events; 1: never right; 2: always right; 3: wrong, then right
    preds = [[0, 1, 2, 1], [1, 1, 2, 2], [0, 1, 2, 2], [1, 1, 2, 2]]
    for epoch, p in enumerate(preds):
        order = [3, 1, 0, 2] if epoch % 2 else [0, 1, 2, 3]  # presentation order does not matter
        tracker.on_batch(_batch(epoch, order, [p[i] for i in order], [[0, 0, 2, 2][i] for i in order]))
    assert tracker.events.tolist() == [2, 0, 0, 0]
    counts = tracker.counts()
    assert counts.tolist() == [2, 3, 0, 0]
    from vision.data import from_tensors

    data = from_tensors(torch.zeros(4, 1, 2, 2), torch.tensor([0, 0, 2, 2]), mean=[0.0], std=[1.0])
    ranking = make_ranking(data, counts, "forgetting", balance=False)
    assert select(ranking, 1).indices.tolist() == [1]  # the never-learned example is kept first
    assert set(select(ranking, 2).indices.tolist()) == {0, 1}
    # Equal counts (2 and 3: never forgotten) are ordered by when they were first learned: 3 (second presentation)
    # is harder than 2 (first); the tie-break stays below one count.
    late = tracker.lateness()
    assert late[3] > late[2] == 0 and late[1] == late.max() and float(late.max()) < 1


def test_forgetting_ranker_keeps_count_order_and_breaks_ties_by_lateness(monkeypatch):
    """Mean counts over runs decide; lateness only orders equal means (a late-learned unforgettable example is
    kept before an early one, never before a more-forgotten one)."""
    import vision.prune.forgetting as fg
    from vision.data import from_tensors

    # per run: (events, first presentation correct); example 0 forgotten once per run, 1 and 2 never, 2 learned late
    plan = {0: ([1, 0, 0], [1, 1, 3]), 1: ([1, 0, 0], [1, 1, 4])}

    def fake_train(data, proxy, seed, hooks):
        events, first = plan[seed % 1000]
        t = hooks[0]
        t.events = torch.tensor(events)
        t.learned[:] = True
        t.first_learned = torch.tensor(first)
        t.presentations[:] = 5

    monkeypatch.setattr(fg, "train_proxy", fake_train)
    data = from_tensors(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]), mean=[0.0], std=[1.0])
    s = fg.ForgettingRanker(runs=2).scores(data)
    assert s[0] > s[2] > s[1] and s[0] - s[1] > 0.9 and s[2] - s[1] < 0.5


def test_el2n_equals_formula(splits8):
    net = build_net("convnet", 1, 10, 8, seed=3, width=8, depth=2).eval()
    data = splits8.val.subset(range(20))
    got = el2n_scores(net, data)
    for i in range(20):
        with torch.no_grad():
            p = torch.softmax(net(data.images[i:i + 1]).double(), 1)[0]
        e = torch.zeros(10, dtype=torch.float64)
        e[data.labels[i]] = 1
        assert got[i].item() == pytest.approx(torch.sqrt(((p - e) ** 2).sum()).item(), rel=1e-6)


@pytest.mark.parametrize("name", ["convnet", "resnet18"])
def test_grand_equals_per_sample_autograd(splits8, name):
    opts = {"width": 8, "depth": 2} if name == "convnet" else {}
    net = build_net(name, 1, 10, 8, seed=1, **opts).eval()
    data = splits8.val.subset(range(3 if name == "resnet18" else 12))
    got = grand_scores(net, data, batch_size=4)
    for i in range(len(data)):
        net.zero_grad()
        F.cross_entropy(net(data.images[i:i + 1]), data.labels[i:i + 1]).backward()
        norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in net.parameters()))
        assert got[i].item() == pytest.approx(norm.item(), rel=1e-4)


def test_curvature_higher_for_mislabelled_twin(trained8, splits8):
    data = splits8.test.subset(range(60))
    with torch.no_grad():
        p = torch.softmax(trained8(data.images), 1)
    confident = torch.nonzero(p[torch.arange(len(data)), data.labels] > 0.9).flatten()[:15]
    assert len(confident) >= 10
    clean = data.subset(confident)
    wrong = clean.with_images(clean.images, (clean.labels + 1) % 10)  # the same images, mislabelled
    c_clean = curvature_scores(trained8, clean, n=4, seed=0)
    c_wrong = curvature_scores(trained8, wrong, n=4, seed=0)
    assert (c_wrong > c_clean).all(), (c_clean, c_wrong)
    assert float(c_wrong.mean() / c_clean.mean()) > 3
    assert torch.equal(c_clean, curvature_scores(trained8, clean, n=4, seed=0))  # seeded


def test_every_ranker_ranks_and_selects(splits8):
    data = splits8.train.subset(range(0, len(splits8.train), 4))  # ~315 examples
    proxy = dict(width=8, depth=2, epochs=3, batch_size=64)
    extra = {"el2n": dict(epoch=2, runs=2), "grand": dict(epoch=1, runs=1), "curvature": dict(epoch=2, probes=2),
             "herding": {}, "kcenter": dict(features="random"), "forgetting": {}}
    for name in RANKERS:
        params = {} if name == "random" else {**proxy, **extra[name]}
        ranker = build_ranker(name, seed=1, **params)
        assert isinstance(ranker, Ranker)
        ranking = ranker.rank(data)
        assert ranking.source == name and np.array_equal(ranking.ids, data.ids.numpy())
        assert not np.isnan(ranking.scores).any()
        sel = select(ranking, 0.3)
        assert len(sel) == int(np.floor(0.3 * len(data) + 0.5))
        counts = np.bincount(data.labels.numpy()[sel.indices], minlength=10)
        assert counts.min() >= 7  # class-balanced by default
        # the kept items are each class's best scores (higher = keep)
        for c in range(10):
            in_c = data.labels.numpy() == c
            kept = np.zeros(len(data), bool)
            kept[sel.indices] = True
            assert ranking.scores[kept & in_c].min() >= ranking.scores[~kept & in_c].max()


def test_build_ranker_errors():
    with pytest.raises(MmselectError, match="unknown pruning method"):
        build_ranker("loss")
    with pytest.raises(MmselectError, match="accepts"):
        build_ranker("el2n", epcoh=3)
    with pytest.raises(MmselectError, match="no proxy"):
        build_ranker("random", width=3)
    r = build_ranker("el2n", epochs=7, width=4, runs=2)
    assert r.proxy.epochs == 7 and r.proxy.width == 4 and r.runs == 2
