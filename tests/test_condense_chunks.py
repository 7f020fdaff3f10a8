"""The DM forwards run in memory-sized chunks (`in_chunks`): same numbers, same gradients, same synthetic set as one
batch; nets whose rows interact (batch norm in training mode) stay in one batch."""
from __future__ import annotations

import numpy as np
import torch

import vision.condense.base as base
from vision.condense import build_condenser
from vision.condense.base import in_chunks, layer_features
from vision.data import load_digits_data
from vision.nets import build_net


def _counting(fn):
    calls = []

    def wrapped(x):
        calls.append(len(x))
        return fn(x)

    return wrapped, calls


def test_chunks_give_the_one_batch_values_and_gradients():
    net = build_net("convnet", 1, 10, 8, seed=0, width=8, depth=2)
    x = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    whole = net.embed(x)
    (g_whole,) = torch.autograd.grad(whole.square().sum(), x)
    per_image = 8 * 8 * 8 * 4  # the first conv's output for one image, in bytes: the largest activation
    fn, calls = _counting(net.embed)
    parts = in_chunks(fn, net, x, budget=3 * per_image)
    assert calls == [3, 3, 3, 1]
    (g_parts,) = torch.autograd.grad(parts.square().sum(), x)
    torch.testing.assert_close(parts, whole)
    torch.testing.assert_close(g_parts, g_whole)
    feats, logits = in_chunks(lambda t: layer_features(net, t), net, x.detach(), budget=4 * per_image)
    ref_feats, ref_logits = layer_features(net, x.detach())
    assert len(feats) == len(ref_feats) == 2
    for a, b in zip(feats, ref_feats):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(logits, ref_logits)


def test_batch_norm_in_training_mode_stays_one_batch():
    net = build_net("convnet", 1, 10, 8, seed=0, width=8, depth=2, norm="batchnorm").train()
    fn, calls = _counting(net.embed)
    in_chunks(fn, net, torch.randn(10, 1, 8, 8), budget=1)
    assert calls == [10]
    net.eval()
    in_chunks(fn, net, torch.randn(10, 1, 8, 8), budget=1)
    assert calls == [10] + [1] * 10


def test_dm_synthetic_set_unchanged_by_chunking(monkeypatch):
    data = load_digits_data(size=8)
    keep = np.concatenate([np.flatnonzero(data.labels.numpy() == c)[:16] for c in range(10)])
    data = data.subset(keep)
    settings = dict(ipc=2, iterations=3, batch_real=16, seed=0, device="cpu", net_options={"width": 16, "depth": 2})
    sets = {}
    small = 40 * 16 * 8 * 8 * 4  # 40 images per chunk: the 160 real images of a step in 4 chunks
    for budget in (small, 2**40):  # chunked / everything in one batch
        monkeypatch.setattr(base, "CHUNK_BYTES", budget)
        sets[budget] = build_condenser("dm", **settings).condense(data).images
    before = build_condenser("dm", **{**settings, "iterations": 0}).condense(data).images
    assert not torch.allclose(sets[small], before)
    torch.testing.assert_close(sets[small], sets[2**40], rtol=1e-5, atol=1e-5)
