"""DSA: one sampled transform, applied identically to real and synthetic batches, differentiable, seeded."""
from __future__ import annotations

import pytest
import torch

from vision.condense.distance import gradient_distance, layer_distance
from vision.condense.dsa import DSA, FAMILIES, DSAConfig


def _images(n=6, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g)


@pytest.mark.parametrize("family", FAMILIES)
def test_siamese_applies_identical_transform_to_real_and_synthetic(family):
    dsa = DSA(DSAConfig(strategy=(family,)))
    real = _images(8)
    syn = real[:3].clone().requires_grad_(True)  # the synthetic batch holds copies of three real images
    changed = False
    for seed in range(4):
        r_aug, s_aug = dsa.siamese(real, syn, torch.Generator().manual_seed(seed))
        assert r_aug.shape == real.shape and s_aug.shape == syn.shape
        torch.testing.assert_close(s_aug, r_aug[:3], rtol=0, atol=1e-6)
        changed |= not torch.allclose(r_aug, real)
    assert changed, f"{family} never changed the images over 4 seeds"


def test_all_mode_and_class_groups_share_one_transform_per_group():
    dsa = DSA(DSAConfig(mode="all"))
    real = _images(12)
    real_groups = torch.arange(12) % 3
    syn = real[:3].clone()  # image k belongs to group k
    r_aug, s_aug = dsa.siamese(real, syn, torch.Generator().manual_seed(1), real_groups=real_groups,
                               syn_groups=torch.arange(3), n_groups=3)
    torch.testing.assert_close(s_aug, r_aug[:3], rtol=0, atol=1e-6)
    # Images in different groups got different transforms.
    same = dsa.apply(real[:1].expand(3, -1, -1, -1), dsa.sample(3, 16, 16, torch.Generator().manual_seed(1)))
    assert not torch.allclose(same[0], same[1])


@pytest.mark.parametrize("family", FAMILIES + ("all",))
def test_gradients_flow_to_synthetic_images_through_augmentation(family):
    cfg = DSAConfig(mode="all") if family == "all" else DSAConfig(strategy=(family,))
    dsa = DSA(cfg)
    real = _images(5)
    syn = torch.zeros(5, 3, 16, 16).normal_(generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    r_aug, s_aug = dsa.siamese(real, syn, torch.Generator().manual_seed(0))
    loss = ((r_aug.mean(0) - s_aug.mean(0)) ** 2).sum()
    loss.backward()
    assert syn.grad is not None and torch.isfinite(syn.grad).all()
    assert syn.grad.abs().sum() > 0
    # A gradient step along -grad lowers the loss: the gradient is the true one, not just nonzero.
    with torch.no_grad():
        syn2 = syn - 1e-2 * syn.grad
    r2, s2 = dsa.siamese(real, syn2, torch.Generator().manual_seed(0))
    assert ((r2.mean(0) - s2.mean(0)) ** 2).sum() < loss.detach()


def test_batched_equals_per_image_loop_and_is_seeded():
    dsa = DSA(DSAConfig(mode="all"))
    x = _images(10, c=1, h=28, w=28)
    p = dsa.sample(10, 28, 28, torch.Generator().manual_seed(7))
    torch.testing.assert_close(dsa.apply(x, p), dsa.apply_per_image(x, p), rtol=0, atol=1e-6)
    a = dsa(x, torch.Generator().manual_seed(5))
    b = dsa(x, torch.Generator().manual_seed(5))
    c = dsa(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_transform_semantics():
    dsa = DSA(DSAConfig(strategy=("flip",), prob_flip=1.0))
    x = _images(2)
    assert torch.equal(dsa(x, torch.Generator().manual_seed(0)), x.flip(3))
    crop = DSA(DSAConfig(strategy=("crop",)))
    p = crop.sample(1, 16, 16, torch.Generator().manual_seed(0))
    p.shift_x[:] = 2
    p.shift_y[:] = -1
    out = crop.apply(x, p)
    # out[y, x] = in[y - 1, x + 2]; shifted-in pixels are zero.
    torch.testing.assert_close(out[:, :, 1:, :-2], x[:, :, :-1, 2:])
    assert (out[:, :, 0, :] == 0).all() and (out[:, :, :, -2:] == 0).all()
    cut = DSA(DSAConfig(strategy=("cutout",)))
    p = cut.sample(1, 16, 16, torch.Generator().manual_seed(0))
    p.cut_x[:] = 8
    p.cut_y[:] = 8
    out = cut.apply(torch.ones(1, 1, 16, 16), p)
    assert out.sum() == 256 - 64 and (out[0, 0, 4:12, 4:12] == 0).all()


def test_gradient_distance_matches_definition():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # row 0: cos 1 -> 0; row 1: cos 0 -> 1
    assert layer_distance(a, b).item() == pytest.approx(1.0, abs=1e-5)
    conv_r, conv_s = torch.randn(4, 3, 3, 3), torch.randn(4, 3, 3, 3)
    expected = sum(1 - torch.nn.functional.cosine_similarity(conv_r[i].flatten(), conv_s[i].flatten(), dim=0)
                   for i in range(4))
    got = gradient_distance([conv_r, torch.randn(4)], [conv_s, torch.randn(4)])
    assert got.item() == pytest.approx(expected.item(), abs=1e-4)
    assert gradient_distance([conv_r], [conv_r]).item() == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError):
        gradient_distance([conv_r], [conv_s], metric="l3")
