"""Example level: the dynamic active set, its swaps, and the training through vision.train."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selector.core.ranking import Ranking
from vision.onion.examples import DynamicExampleSelector, ExampleLevelConfig


def test_initial_drop_is_a_seeded_random_share():
    a = DynamicExampleSelector(100, ExampleLevelConfig(drop=0.2, seed=3))
    b = DynamicExampleSelector(100, ExampleLevelConfig(drop=0.2, seed=3))
    c = DynamicExampleSelector(100, ExampleLevelConfig(drop=0.2, seed=4))
    assert len(a.active) == 80 and len(a.dropped) == 20
    assert np.array_equal(np.sort(np.concatenate([a.active, a.dropped])), np.arange(100))
    assert np.array_equal(a.active, b.active) and not np.array_equal(a.active, c.active)
    assert a.n_swap == 10


def test_swaps_keep_size_remove_least_forgotten_and_restore_from_pool():
    n = 60
    rng = np.random.default_rng(0)
    forgetting = rng.permutation(n).astype(float)  # distinct counts: the least forgotten are well defined
    sel = DynamicExampleSelector(n, ExampleLevelConfig(drop=0.25, every=2, max_swaps=3, swap_share=0.6, seed=1))
    size = len(sel.active)
    assert [sel.due(e) for e in range(1, 9)] == [False, True, False, True, False, True, False, True]
    for swap_no in range(3):
        before_active, before_pool = sel.active.copy(), sel.dropped.copy()
        swap = sel.swap(Ranking(np.arange(n), forgetting), epochs_done=2 * (swap_no + 1))
        assert len(sel.active) == size and len(sel.dropped) == n - size  # constant sizes
        assert len(swap.removed) == len(swap.restored) == sel.n_swap == 9
        assert set(swap.restored) <= set(before_pool)  # swapped-in examples come from the dropped pool
        assert set(swap.removed) <= set(before_active)
        # The removed ones are exactly the least-forgotten active examples.
        least = before_active[np.argsort(forgetting[before_active])[:9]]
        assert set(swap.removed) == set(least)
        assert np.array_equal(np.sort(np.concatenate([sel.active, sel.dropped])), np.arange(n))
        assert set(swap.restored) <= set(sel.active) and set(swap.removed) <= set(sel.dropped)
    assert len(sel.swaps) == 3 and not sel.due(8)  # max_swaps reached
    assert [s.as_dict()["epoch"] for s in sel.swaps] == [2, 4, 6]


def test_swap_needs_scores_for_every_active_example():
    sel = DynamicExampleSelector(10, ExampleLevelConfig(drop=0.2, seed=0))
    with pytest.raises(ValueError, match="misses"):
        sel.swap(Ranking(sel.active[:-1], np.zeros(len(sel.active) - 1)), 1)


def test_run_onion_trains_through_the_shared_loop_and_logs_swaps():
    from vision.data import from_tensors, split
    from vision.onion.run import OnionConfig, run_onion
    from vision.onion.vit import OnionViTConfig

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(80) % 2
    images = torch.rand(80, 1, 8, 8, generator=g) * 0.3
    images[labels == 1, :, :4] += 0.7  # class 1: bright top half
    splits = split(from_tensors(images, labels), (0.6, 0.2, 0.2), seed=0)
    vit = OnionViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=2, embed_dim=24, depth=2, num_heads=3,
                         keep_ratio=0.5, prune_blocks=(0,), attn_ratio=0.5)
    config = OnionConfig(vit=vit, example=ExampleLevelConfig(drop=0.25, every=2, max_swaps=2, seed=0), epochs=6,
                         lr=3e-3, batch_size=16, device="cpu")
    result = run_onion(splits, config)
    n = len(splits.train)
    assert result.config.levels == ("example", "token", "attention")
    assert [s.epoch for s in result.swaps] == [2, 4]
    assert len(result.history) == 6 and {h["active"] for h in result.history} == {n - round(0.25 * n)}
    assert result.images_processed == 6 * (n - round(0.25 * n))
    assert result.throughput > 0 and result.epoch_throughput > result.throughput and result.train_cpu_seconds > 0
    assert result.tokens == [(17, 10), (10, 10)]
    assert 0.0 <= result.test_accuracy <= 1.0
    first_dropped = DynamicExampleSelector(n, config.example).dropped
    assert set(result.swaps[0].restored) <= set(first_dropped)
