"""CAFE (condensing by aligning features, Wang et al. CVPR 2022), for any class count and input shape.

Loss for one network: layer-wise alignment, sum over blocks and classes of the MSE between the mean real and mean
synthetic feature maps, plus a discrimination loss: every real embedding is classified by its inner product with
the synthetic class centres (mean synthetic embeddings), cross-entropy against its true class.

Bi-level loop: every iteration draws a fresh network; up to `outer_loop` times the synthetic images take a step on
that loss and the network then trains on the synthetic set for up to `inner_loop` epochs. Both loops stop early
when the network's accuracy on the real batch stops improving (by more than `plateau_tol`, `patience` checks in a
row). Nothing assumes 10 classes or 3x32x32: features come from hooks and shapes from the data.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vision.condense.base import CondenseConfig, Condenser, accuracy, layer_features
from vision.condense.dc import dc_schedule
from vision.train import TrainConfig, train

__all__ = ["CAFEConfig", "CAFE"]


@dataclass(frozen=True)
class CAFEConfig(CondenseConfig):
    iterations: int = 1000
    lr_img: float = 0.1
    lr_net: float = 0.01
    outer_loop: int | None = None  # default: DC's schedule for ipc
    inner_loop: int | None = None
    align_weight: float = 1.0
    align_reduction: str = "sum"  # per layer: squared L2 of the mean-feature difference ("mean": MSE)
    disc_weight: float = 1.0
    disc_temperature: float = 1.0
    plateau_tol: float = 0.005
    patience: int = 2
    check_every: int = 5  # inner epochs between real-accuracy checks
    batch_train: int = 256
    init: str = "real"


class CAFE(Condenser):
    name = "cafe"
    Config = CAFEConfig

    def matching_loss(self, net, real, syn):
        cfg = self.config
        c, m, k = real.shape[0], real.shape[1], syn.shape[1]
        with torch.no_grad():
            f_real, _ = layer_features(net, real.flatten(0, 1))
        f_syn, _ = layer_features(net, syn.flatten(0, 1))
        align = 0.0
        for fr, fs in zip(f_real, f_syn):
            mr = fr.reshape(c, m, -1).mean(1)
            ms = fs.reshape(c, k, -1).mean(1)
            d = (mr - ms) ** 2
            align = align + (d.sum(-1) if cfg.align_reduction == "sum" else d.mean(-1)).sum()
        e_real = f_real[-1].reshape(c * m, -1)
        centres = f_syn[-1].reshape(c, k, -1).mean(1)
        logits = e_real @ centres.t() / self.config.disc_temperature
        labels = torch.arange(c, device=real.device).repeat_interleave(m)
        disc = F.cross_entropy(logits, labels)
        return self.config.align_weight * align + self.config.disc_weight * disc

    def schedule(self) -> tuple[int, int]:
        outer, inner = dc_schedule(self.config.ipc)
        return self.config.outer_loop or outer, self.config.inner_loop or inner

    def _real_accuracy(self, net, real) -> float:
        with torch.no_grad():
            logits = net(real.flatten(0, 1))
        return accuracy(logits, torch.arange(real.shape[0], device=real.device).repeat_interleave(real.shape[1]))

    def step(self, it, syn, opt, generator):
        cfg = self.config
        outer, inner = self.schedule()
        net = self.new_net(it)
        net.train()
        total, steps = 0.0, 0
        best_outer, stale_outer = -1.0, 0
        for ol in range(outer):
            loss, real = self.image_update(net, syn, opt, generator)
            total += loss
            steps += 1
            if ol == outer - 1:
                break
            syn_data = (syn.detach().flatten(0, 1), self.syn_labels(syn.shape[1]))
            best_inner, stale_inner, done = -1.0, 0, 0
            while done < inner:
                epochs = min(cfg.check_every, inner - done)
                train(net, syn_data, TrainConfig(epochs=epochs, lr=cfg.lr_net, momentum=0.0, weight_decay=0.0,
                                                 decay_at=(), batch_size=cfg.batch_train,
                                                 augment=self.train_augment(),
                                                 seed=int(torch.randint(2**31 - 1, (1,), generator=generator)),
                                                 device=str(self.device)))
                done += epochs
                acc = self._real_accuracy(net, real)
                if acc > best_inner + cfg.plateau_tol:
                    best_inner, stale_inner = acc, 0
                else:
                    stale_inner += 1
                    if stale_inner >= cfg.patience:
                        break
            net.train()
            if best_inner > best_outer + cfg.plateau_tol:
                best_outer, stale_outer = best_inner, 0
            else:
                stale_outer += 1
                if stale_outer >= cfg.patience:
                    break
        return total / max(steps, 1)
