"""The shared loop's per-epoch active set (`train(..., active=f)`) and the onion's one-loop example level."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from vision.train import Hook, TrainConfig, train


def _problem(n=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 2, 2, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), x, y


class _Recorder(Hook):
    """Positions seen per epoch, and the optimiser and its AdamW step count at every epoch end."""

    def __init__(self):
        self.seen: dict[int, list[int]] = {}
        self.optimizers, self.steps = [], []

    def on_batch(self, batch):
        self.seen.setdefault(batch.epoch, []).extend(batch.indices.tolist())

    def on_epoch(self, info):
        self.optimizers.append(info.optimizer)
        first = info.optimizer.param_groups[0]["params"][0]
        self.steps.append(int(info.optimizer.state[first]["step"]))


class _SwapAfter(Hook):
    """Swaps the first half of the active set for the pool after epoch `at` (0-based): a minimal example level."""

    def __init__(self, active, pool, at):
        self.active, self.pool, self.at = np.asarray(active), np.asarray(pool), at

    def positions(self, epoch):
        return self.active

    def on_epoch(self, info):
        if info.epoch == self.at:
            k = len(self.pool)
            self.active, self.pool = np.sort(np.concatenate([self.active[k:], self.pool])), self.active[:k]


def test_active_set_changes_at_the_boundary_with_one_optimizer_and_constant_size():
    net, x, y = _problem()
    swapper = _SwapAfter(active=np.arange(0, 36), pool=np.arange(36, 48), at=1)
    rec = _Recorder()
    result = train(net, (x, y), TrainConfig(epochs=4, optimizer="adamw", lr=0.01, batch_size=8, device="cpu"),
                   hooks=[rec, swapper], active=swapper.positions)
    before, after = set(range(36)), set(range(12, 48))
    assert [sorted(rec.seen[e]) for e in range(4)] == [sorted(before)] * 2 + [sorted(after)] * 2  # each once
    assert [h["examples"] for h in result.history] == [36] * 4
    assert all(o is rec.optimizers[0] for o in rec.optimizers)  # one optimiser for the whole run
    assert rec.steps == [5, 10, 15, 20]  # its step count continues across the swap (36 / 8 -> 5 batches an epoch)
    assert [h["lr"] for h in result.history] == pytest.approx([0.01, 0.01, 0.001, 0.001])  # one lr schedule


def test_every_position_as_active_set_reproduces_the_plain_loop():
    net, x, y = _problem()
    ref = copy.deepcopy(net)
    config = TrainConfig(epochs=3, optimizer="adamw", lr=0.01, batch_size=8, device="cpu")
    plain = train(ref, (x, y), config)
    full = train(net, (x, y), config, active=lambda epoch: torch.arange(len(x)))
    for a, b in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    assert "examples" not in plain.history[0] and full.history[0]["examples"] == len(x)
    assert [h["train_loss"] for h in full.history] == pytest.approx([h["train_loss"] for h in plain.history])


@pytest.mark.parametrize("positions, match", [([], "non-empty"), ([0, 48], "must lie in 0..47"),
                                              ([[0, 1]], "1-D")])
def test_bad_active_sets_fail_clearly(positions, match):
    net, x, y = _problem()
    with pytest.raises(ValueError, match=match):
        train(net, (x, y), TrainConfig(epochs=1, device="cpu"), active=lambda epoch: positions)


def test_run_onion_is_one_training_loop_that_trains_on_the_logged_active_sets(monkeypatch):
    import vision.onion.run as run
    from vision.data import from_tensors, split
    from vision.onion.examples import DynamicExampleSelector, ExampleLevelConfig
    from vision.onion.vit import OnionViTConfig

    calls, rec = [], _Recorder()

    def spy(net, data, config, *, hooks=(), active=None, **kw):
        calls.append(config.epochs)
        return train(net, data, config, hooks=[*hooks, rec], active=active, **kw)

    monkeypatch.setattr(run, "train", spy)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(80) % 2
    splits = split(from_tensors(torch.rand(80, 1, 8, 8, generator=g), labels), (0.6, 0.2, 0.2), seed=0)
    vit = OnionViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=12, depth=1, num_heads=3)
    example = ExampleLevelConfig(drop=0.25, every=2, max_swaps=1, seed=0)
    result = run.run_onion(splits, run.OnionConfig(vit=vit, example=example, epochs=4, batch_size=16, device="cpu"))
    assert calls == [4]  # one call of the shared loop for the whole run
    assert all(o is rec.optimizers[0] for o in rec.optimizers)
    first = DynamicExampleSelector(len(splits.train), example).active
    (swap,) = result.swaps
    second = np.sort(np.concatenate([np.setdiff1d(first, swap.removed), swap.restored]))
    assert swap.epoch == 2 and set(swap.restored).isdisjoint(first)
    assert [sorted(rec.seen[e]) for e in range(4)] == [first.tolist()] * 2 + [second.tolist()] * 2
    assert {h["active"] for h in result.history} == {len(first)}
