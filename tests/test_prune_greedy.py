"""Herding and k-center greedy against answers worked out by hand and against brute-force implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selector.core.ranking import select
from vision.data import from_tensors
from vision.prune import HerdingRanker, KCenterRanker, build_ranker, herding_order, kcenter_order


def test_herding_by_hand():
    # Points 0, 1, 2, 10 on a line, mean 3.25.
    # t=0: nearest to 3.25 is 2 (index 2).  t=1: w = 2*3.25 - 2 = 4.5 -> 1 (index 1) beats 0 and 10.
    # t=2: w = 3*3.25 - 3 = 6.75 -> 10 (index 3) beats 0.  t=3: 0 (index 0).
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0]], dtype=torch.float64)
    assert herding_order(x).tolist() == [2, 1, 3, 0]
    assert herding_order(x, 2).tolist() == [2, 1]


def _herding_brute(x: np.ndarray, k: int) -> list[int]:
    mu = x.mean(0)
    chosen: list[int] = []
    for _ in range(k):
        best, best_cost = -1, np.inf
        for i in range(len(x)):
            if i in chosen:
                continue
            cost = np.linalg.norm(mu - x[chosen + [i]].mean(0))
            if cost < best_cost:
                best, best_cost = i, cost
        chosen.append(best)
    return chosen


def _kcenter_brute(x: np.ndarray, k: int) -> list[int]:
    dist = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)  # full matrix: fine for a brute-force check
    chosen = [int(np.argmin(np.linalg.norm(x - x.mean(0), axis=1)))]
    while len(chosen) < k:
        nearest = dist[:, chosen].min(1)
        chosen.append(int(np.argmax(nearest)))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_orders_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 5)) * rng.uniform(0.5, 2, size=5)
    xt = torch.tensor(x)
    assert herding_order(xt, 15).tolist() == _herding_brute(x, 15)
    assert kcenter_order(xt, 15).tolist() == _kcenter_brute(x, 15)
    # streaming in tiny blocks gives the same answer
    assert kcenter_order(xt, 15, block=7).tolist() == _kcenter_brute(x, 15)
    assert herding_order(xt, 15, block=3).tolist() == _herding_brute(x, 15)


def test_kcenter_handles_duplicates_without_repeats():
    x = torch.zeros(6, 3)
    x[3:] = 1.0
    order = kcenter_order(x)
    assert sorted(order.tolist()) == list(range(6))


def test_coreset_rankers_select_per_class_greedy_subsets():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(60, 1, 3, 3)).astype(np.float32)
    labels = np.repeat([0, 1, 2], 20)
    data = from_tensors(images, labels, mean=[0.0], std=[1.0])
    feats = data.images.flatten(1).double()
    for ranker, fn in ((HerdingRanker(features="pixels"), _herding_brute), (KCenterRanker(features="pixels"), _kcenter_brute)):
        ranking = ranker.rank(data)
        assert np.array_equal(ranking.groups, labels)
        sel = select(ranking, 0.25)  # 5 per class
        for c in range(3):
            idx = np.flatnonzero(labels == c)
            expected = set(idx[fn(feats[idx].numpy(), 5)].tolist())
            assert set(sel.indices[labels[sel.indices] == c].tolist()) == expected
    glob = build_ranker("kcenter", features="pixels", per_class=False).rank(data)
    assert glob.groups is None
    assert select(glob, 10).indices.tolist() == _kcenter_brute(feats.numpy(), 10)
