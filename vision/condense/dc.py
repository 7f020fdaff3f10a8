"""DC (gradient matching, Zhao et al. ICLR 2021) and DSA (DC + differentiable siamese augmentation, ICML 2021).

Every outer iteration draws a fresh ConvNet. In each of its `outer_loop` steps the synthetic images move so that
the network's loss gradient on them matches its gradient on real images, class by class (distance: per output row,
sum of 1 - cosine); then the network trains `inner_loop` epochs on the synthetic set (lr 0.01, plain SGD) so the
next match happens at a trained point. Schedule (outer, inner) = (1, 1), (10, 50), (50, 10) for ipc 1, 10, 50.

Per-class gradients: on GPU all classes go through one vmapped pass (`torch.func.vmap(grad(...))` over the class
axis); on CPU a per-class backward loop measured 2x faster (benchmarks/condense_speed.py), so it is the CPU default
(`class_loop`). Both give the same loss and image gradients (tests/test_condense_methods.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from vision.condense.base import CondenseConfig, Condenser
from vision.train import TrainConfig, train

__all__ = ["DCConfig", "DC", "DSACondenser", "dc_schedule"]

_SCHEDULE = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def dc_schedule(ipc: int) -> tuple[int, int]:
    """(outer_loop, inner_loop) of the reference for `ipc`; other ipc values get (ipc, 10)."""
    return _SCHEDULE.get(ipc, (ipc, 10))


@dataclass(frozen=True)
class DCConfig(CondenseConfig):
    """DC settings. outer_loop / inner_loop default to `dc_schedule(ipc)`; distance: 'ours', 'mse' or 'cos'."""

    iterations: int = 1000
    lr_img: float = 0.1
    lr_net: float = 0.01
    outer_loop: int | None = None
    inner_loop: int | None = None
    distance: str = "ours"
    batch_train: int = 256
    class_loop: bool | None = None  # per-class backward loop; None: loop on CPU (measured faster), vmap on GPU


def class_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy of each class's batch w.r.t. the net's parameters.

    x: (C, m, ch, H, W), y: (C, m). Returns {name: (C, *param.shape)}. The graph to x is kept (so the result can be
    differentiated w.r.t. synthetic images); parameters are treated as constants.
    """
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(net, p, (xb,)), yb)

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)


def batched_gradient_distance(g_real: dict[str, torch.Tensor], g_syn: dict[str, torch.Tensor],
                              metric: str = "ours") -> torch.Tensor:
    """Sum over classes of `vision.condense.distance.gradient_distance`, for (C, ...) stacked gradients."""
    if metric == "ours":
        total = 0.0
        for k, a in g_real.items():
            if a.dim() <= 2:  # (C, n): biases and norm parameters contribute nothing
                continue
            b = g_syn[k]
            a2, b2 = a.flatten(2), b.flatten(2)  # (C, out, in*k*k)
            cos = (a2 * b2).sum(-1) / (a2.norm(dim=-1) * b2.norm(dim=-1) + 1e-6)
            total = total + (1 - cos).sum()
        return total
    if metric == "mse":
        return sum(((g_real[k] - g_syn[k]) ** 2).sum() for k in g_real)
    if metric == "cos":
        a = torch.cat([g_real[k].flatten(1) for k in g_real], 1)
        b = torch.cat([g_syn[k].flatten(1) for k in g_real], 1)
        return (1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-6)).sum()
    raise ValueError(f"unknown gradient distance {metric!r}; choose 'ours', 'mse' or 'cos'")


class DC(Condenser):
    name = "dc"
    Config = DCConfig

    def matching_loss(self, net, real, syn):
        loop = self.config.class_loop
        if loop if loop is not None else real.device.type == "cpu":
            return self._loop_matching_loss(net, real, syn)
        c = real.shape[0]
        y_real = torch.arange(c, device=real.device)[:, None].expand(c, real.shape[1])
        y_syn = torch.arange(c, device=real.device)[:, None].expand(c, syn.shape[1])
        g_real = {k: v.detach() for k, v in class_gradients(net, real, y_real).items()}
        g_syn = class_gradients(net, syn, y_syn)
        return batched_gradient_distance(g_real, g_syn, self.config.distance)

    def _loop_matching_loss(self, net, real, syn):
        """The same objective with one backward per class (faster than vmap on CPU: 2x at 28x28, width 128)."""
        params = [p for p in net.parameters()]
        loss = 0.0
        for c in range(real.shape[0]):
            yr = torch.full((real.shape[1],), c, device=real.device)
            ys = torch.full((syn.shape[1],), c, device=real.device)
            g_real = {k: g.detach()[None] for k, g in zip(
                self._names(net), torch.autograd.grad(F.cross_entropy(net(real[c]), yr), params))}
            g_syn = {k: g[None] for k, g in zip(
                self._names(net), torch.autograd.grad(F.cross_entropy(net(syn[c]), ys), params, create_graph=True))}
            loss = loss + batched_gradient_distance(g_real, g_syn, self.config.distance)
        return loss

    @staticmethod
    def _names(net):
        return [k for k, _ in net.named_parameters()]

    def schedule(self) -> tuple[int, int]:
        outer, inner = dc_schedule(self.config.ipc)
        return self.config.outer_loop or outer, self.config.inner_loop or inner

    def step(self, it, syn, opt, generator):
        cfg = self.config
        outer, inner = self.schedule()
        net = self.new_net(it)
        net.train()
        total = 0.0
        for ol in range(outer):
            total += self.image_update(net, syn, opt, generator)[0]
            if ol == outer - 1:
                break
            # Train the network on the current synthetic set (the inner level of the bi-level loop).
            syn_data = (syn.detach().flatten(0, 1), self.syn_labels(syn.shape[1]))
            train(net, syn_data, TrainConfig(epochs=inner, lr=cfg.lr_net, momentum=0.0, weight_decay=0.0,
                                             decay_at=(), batch_size=cfg.batch_train, augment=self.train_augment(),
                                             seed=int(torch.randint(2**31 - 1, (1,), generator=generator)),
                                             device=str(self.device)))
            net.train()
        return total / outer


@dataclass(frozen=True)
class DSAConfig(DCConfig):
    """DSA = DC with siamese augmentation on, initialised from real images."""

    dsa: bool = True
    init: str = "real"


class DSACondenser(DC):
    name = "dsa"
    Config = DSAConfig
