"""Token- and attention-level sparsity of the onion ViT."""
from __future__ import annotations

import math

import pytest
import torch

from vision.onion.vit import (OnionViTConfig, build_dense_vit, build_onion_vit, configure_sparsity, prune_tokens,
                              sparse_attention_mask, token_counts)

SMALL = dict(img_size=16, patch_size=4, embed_dim=48, depth=4, num_heads=3)


def _pair(**kw):
    torch.manual_seed(0)
    config = OnionViTConfig(**SMALL, **kw)
    dense = build_dense_vit(config).eval()
    torch.nn.init.normal_(dense.head.weight, std=0.5)  # "jax" init zeroes the head: outputs would all be equal
    onion = build_onion_vit(config).eval()
    onion.load_state_dict(dense.state_dict())
    return config, dense, onion


def test_all_ratios_one_equals_dense_vit():
    _, dense, onion = _pair(keep_ratio=1.0, attn_ratio=1.0)
    assert set(dense.state_dict()) == set(onion.state_dict())
    x = torch.randn(5, 3, 16, 16)
    assert torch.equal(dense(x), onion(x))
    # Also in training mode with gradients: identical loss and identical parameter gradients.
    dense.train(), onion.train()
    y = torch.tensor([0, 1, 2, 3, 4])
    for m in (dense, onion):
        torch.nn.functional.cross_entropy(m(x), y).backward()
    for (n1, p1), (n2, p2) in zip(dense.named_parameters(), onion.named_parameters()):
        assert n1 == n2 and torch.equal(p1.grad, p2.grad), n1


def test_explicit_attention_path_matches_dense_when_nothing_is_dropped():
    # attn_ratio just below 1 keeps every key of 17 tokens (ceil(0.99 * 17) = 17) but runs the explicit softmax path.
    _, dense, onion = _pair(attn_ratio=0.99)
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(onion(x), dense(x), rtol=1e-5, atol=1e-5)


def test_prune_tokens_keeps_cls_and_highest_attention_tokens():
    torch.manual_seed(1)
    B, N, C = 4, 11, 6
    x = torch.randn(B, N, C)
    attn = torch.rand(B, N - 1).softmax(-1)
    out, kept = prune_tokens(x, attn, keep_ratio=0.5, fuse=True)
    k = math.ceil(0.5 * (N - 1))
    assert out.shape == (B, 1 + k + 1, C)
    assert torch.all(kept[:, 0] == 0)
    assert torch.equal(out[:, 0], x[:, 0])  # [CLS] passes through untouched
    for b in range(B):
        expected = set((attn[b].topk(k).indices + 1).tolist())
        assert set(kept[b, 1:].tolist()) == expected
        assert kept[b, 1:].tolist() == sorted(expected)  # original spatial order kept
        assert torch.equal(out[b, 1:1 + k], x[b, kept[b, 1:]])
        # The fused token is the attention-weighted mean of exactly the pruned tokens.
        pruned = sorted(set(range(1, N)) - expected)
        w = attn[b, [p - 1 for p in pruned]]
        torch.testing.assert_close(out[b, -1], (w[:, None] * x[b, pruned]).sum(0) / w.sum())


def test_cls_never_pruned_whatever_the_scores():
    # [CLS] is not a candidate: position 0 is kept once and first, the k best others follow, even at tiny ratios.
    x = torch.randn(2, 9, 4)
    attn = torch.tensor([[0.01, 0.02, 0.03, 0.60, 0.04, 0.05, 0.06, 0.19]] * 2)
    for ratio, expected in ((0.25, [0, 4, 8]), (0.01, [0, 4])):
        out, kept = prune_tokens(x, attn, keep_ratio=ratio, fuse=False)
        assert kept.tolist() == [expected, expected]
        assert torch.equal(out[:, 0], x[:, 0])


def test_model_prunes_by_cls_attention_and_shortens_sequence():
    config, _, onion = _pair(keep_ratio=0.5, prune_blocks=(1, 2))
    for blk in onion.blocks:
        blk.record_kept = True
    lengths = []
    hooks = [blk.register_forward_hook(lambda m, i, o: lengths.append(o.shape[1])) for blk in onion.blocks]
    x = torch.randn(2, 3, 16, 16)
    onion(x)
    for h in hooks:
        h.remove()
    assert lengths == [n_mlp for _, n_mlp in token_counts(config)] == [17, 10, 7, 7]
    for i in (1, 2):
        kept = onion.blocks[i].last_kept
        assert torch.all(kept[:, 0] == 0)
    assert onion.blocks[0].last_kept is None and onion.blocks[3].last_kept is None

    # The kept tokens of block 1 are the top-attention ones from the [CLS] row of that block's attention.
    captured = {}
    blk = onion.blocks[1]
    h = onion.blocks[0].register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    onion(x)
    h.remove()
    from vision.onion.vit import attention_with_cls
    _, cls = attention_with_cls(blk.attn, blk.norm1(captured["x"]), 1.0)
    expected = cls.topk(8, dim=1).indices.sort(1).values + 1
    assert torch.equal(blk.last_kept[:, 1:], expected)


def test_sparse_attention_mask_keeps_row_topk_cls_column_and_cls_row():
    torch.manual_seed(2)
    scores = torch.randn(2, 3, 10, 10)
    keep = sparse_attention_mask(scores, 0.3)
    k = math.ceil(0.3 * 10)
    assert torch.all(keep[..., 0])  # every query keeps the [CLS] key
    assert torch.all(keep[..., 0, :])  # the [CLS] query row is dense
    assert torch.all(keep[..., 1:, :].sum(-1) == k)
    # Apart from the [CLS] column, the kept keys are the strongest of each row.
    rest = scores[..., 1:, 1:]
    kept_rest = keep[..., 1:, 1:]
    weakest_kept = rest.masked_fill(~kept_rest, float("inf")).min(-1).values
    strongest_dropped = rest.masked_fill(kept_rest, float("-inf")).max(-1).values
    assert torch.all(weakest_kept > strongest_dropped)


def test_attention_sparsity_changes_output_and_gradients_flow():
    _, dense, onion = _pair(attn_ratio=0.3, keep_ratio=0.7)
    onion.train()
    x = torch.randn(3, 3, 16, 16)
    out = onion(x)
    assert not torch.allclose(out, dense.train()(x))
    out.sum().backward()
    assert all(p.grad is not None for p in onion.parameters() if p.requires_grad)


def test_configure_sparsity_per_block_and_validation():
    config = OnionViTConfig(**SMALL, keep_ratio=0.6, prune_blocks=(2,), attn_ratio=0.5, attn_blocks=(0, 3))
    model = build_onion_vit(config)
    assert [b.keep_ratio for b in model.blocks] == [1.0, 1.0, 0.6, 1.0]
    assert [b.attn_ratio for b in model.blocks] == [0.5, 1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="keep_ratio"):
        OnionViTConfig(keep_ratio=0.0)
    with pytest.raises(ValueError, match="prune_blocks"):
        OnionViTConfig(depth=4, prune_blocks=(4,))
    with pytest.raises(TypeError, match="OnionBlock"):
        configure_sparsity(build_dense_vit(config), config)
