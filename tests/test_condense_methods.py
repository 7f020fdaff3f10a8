"""Condensers on small real data: each lowers its own matching objective; CAFE takes any shape and class count;
results are seeded, carry their settings, and round-trip through disk."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vision.condense import CONDENSERS, build_condenser
from selector.core.registry import UnknownName
from vision.condense.base import CondenseError
from vision.condense.idm import expand, partition
from vision.data import from_tensors, load_digits_data
from vision.reduction import Reduction

SMALL = {"net_options": {"width": 16, "depth": 2}, "batch_real": 16, "device": "cpu"}
STEPS = {"dc": dict(iterations=6), "dsa": dict(iterations=6),
         "dm": dict(iterations=6), "idm": dict(iterations=6, net_interval=2, queue_size=3),
         "cafe": dict(iterations=4, outer_loop=2, inner_loop=2, check_every=1)}


@pytest.fixture(scope="module")
def digits8():
    """The sklearn digits at their native 8x8, 24 images per class."""
    data = load_digits_data(size=8)
    labels = data.labels.numpy()
    keep = np.concatenate([np.flatnonzero(labels == c)[:24] for c in range(10)])
    return data.subset(keep)


@pytest.mark.parametrize("method", sorted(CONDENSERS))
def test_condenser_lowers_its_matching_loss(method, digits8):
    settings = {**SMALL, **STEPS[method], "ipc": 2, "seed": 0}
    before = build_condenser(method, **{**settings, "iterations": 0}).condense(digits8)
    cond = build_condenser(method, **settings)
    after = cond.condense(digits8)
    assert isinstance(after, Reduction) and after.method == method
    per_class = 2 * (4 if method == "idm" else 1)
    assert after.images.shape == (10 * per_class, 1, 8, 8)
    assert torch.equal(after.labels, torch.arange(10).repeat_interleave(per_class))
    assert torch.isfinite(after.images).all()
    assert not torch.allclose(after.images, before.images)
    l0, l1 = cond.probe_loss(digits8, before.images), cond.probe_loss(digits8, after.images)
    assert l1 < l0, f"{method}: matching loss did not fall ({l0:.4f} -> {l1:.4f})"
    assert after.settings["iterations"] == settings["iterations"] and after.settings["iterations_per_s"] > 0


@pytest.mark.parametrize("channels,classes,size", [(1, 3, 12), (3, 7, 10)])
def test_cafe_any_channels_and_class_count(channels, classes, size):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(classes * 6, channels, size, size, generator=g)
    y = torch.arange(classes).repeat_interleave(6)
    x = x + y.view(-1, 1, 1, 1) / classes  # classes differ in brightness
    data = from_tensors(x, y)
    red = build_condenser("cafe", ipc=1, iterations=2, outer_loop=2, inner_loop=1, **SMALL).condense(data)
    assert red.images.shape == (classes, channels, size, size)
    assert red.classes == data.classes and torch.isfinite(red.images).all()


def test_seeded_and_saved_with_settings(digits8, tmp_path):
    a = build_condenser("dm", ipc=1, iterations=2, seed=3, **SMALL).condense(digits8)
    b = build_condenser("dm", ipc=1, iterations=2, seed=3, **SMALL).condense(digits8)
    c = build_condenser("dm", ipc=1, iterations=2, seed=4, **SMALL).condense(digits8)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    path = a.save(tmp_path / "synth.pt")
    back = Reduction.load(path)
    assert torch.equal(back.images, a.images) and back.settings["seed"] == 3 and back.settings["lr_img"] == 1.0
    assert back.as_data().num_classes == 10


def test_noise_init_and_errors(digits8):
    red = build_condenser("dm", ipc=1, iterations=0, init="noise", **SMALL).condense(digits8)
    assert abs(float(red.images.mean())) < 0.5  # standard normal, not real digits
    with pytest.raises(CondenseError):
        build_condenser("dm", ipc=0)
    with pytest.raises(CondenseError):
        build_condenser("dm", ipc=1, bogus=1)
    with pytest.raises(UnknownName, match="unknown condensation method 'nope'; known: dc, dsa, dm, idm, cafe"):
        build_condenser("nope")


def test_idm_partition_expand_round_trip():
    g = torch.Generator().manual_seed(0)
    full = torch.rand(2, 4, 1, 8, 8, generator=g)
    stored = partition(full, 2)
    assert stored.shape == (2, 1, 1, 8, 8)
    # Each quadrant of the stored image is one downsampled image, in row-major order.
    quad = torch.nn.functional.interpolate(full[0, 1:2, :], size=(4, 4), mode="bilinear", align_corners=False,
                                           antialias=True)
    torch.testing.assert_close(stored[0, 0, :, :4, 4:], quad[0])
    back = expand(stored, 2)
    assert back.shape == full.shape
    assert (back - full).abs().mean() < (full - full.mean()).abs().mean()  # a blurred copy, not noise


def test_dc_vmap_and_class_loop_agree(digits8):
    from vision.nets import build_net

    net = build_net("convnet", 1, 10, 8, seed=0, width=16, depth=2)
    g = torch.Generator().manual_seed(0)
    real = torch.randn(10, 4, 1, 8, 8, generator=g)
    grads = []
    for loop in (True, False):
        syn = torch.randn(10, 2, 1, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        dc = build_condenser("dc", ipc=2, class_loop=loop, **SMALL)
        loss = dc.matching_loss(net, real, syn)
        loss.backward()
        grads.append((float(loss.detach()), syn.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-3, atol=1e-5)
