"""IDM (improved distribution matching, Zhao et al. CVPR 2023): DM plus three changes.

1. Partition and expand: each stored synthetic image holds factor x factor smaller images; training uses them
   upsampled back to full size, so `ipc` stored images give ipc * factor^2 training images.
2. A queue of partly trained networks: a fresh network joins every `net_interval` iterations (the oldest leaves
   when the queue is full); every iteration `train_nets` of them take one SGD step on a real batch, and the
   matching network is drawn from the queue.
3. Cross-entropy of the matching network on the synthetic images, weighted by that network's running accuracy on
   real data (`ce_weight * accuracy * CE`), next to the mean-embedding loss.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vision.condense.base import CondenseError
from vision.condense.dm import DM, DMConfig

__all__ = ["IDMConfig", "IDM", "expand", "partition"]


@dataclass(frozen=True)
class IDMConfig(DMConfig):
    """IDM settings (queue size and intervals scaled down from the paper's 100 networks for CPU runs)."""

    iterations: int = 20000
    lr_img: float = 0.2
    factor: int = 2
    queue_size: int = 10
    net_interval: int = 10
    train_nets: int = 1
    lr_net: float = 0.01
    batch_train: int = 256
    ce_weight: float = 0.5


def expand(stored: torch.Tensor, factor: int) -> torch.Tensor:
    """(C, k, ch, H, W) stored images -> (C, k * factor^2, ch, H, W): every tile upsampled to full size."""
    if factor == 1:
        return stored
    c, k, ch, h, w = stored.shape
    x = stored.flatten(0, 1)
    tiles = [t for rows in torch.tensor_split(x, factor, dim=2) for t in torch.tensor_split(rows, factor, dim=3)]
    up = [F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False) for t in tiles]
    return torch.stack(up, 1).view(c, k * factor * factor, ch, h, w)


def partition(images: torch.Tensor, factor: int) -> torch.Tensor:
    """The inverse direction for initialisation: (C, k * factor^2, ch, H, W) full-size images -> (C, k, ch, H, W),
    each stored image tiling factor^2 downsampled ones (row-major, the order `expand` reads them back)."""
    if factor == 1:
        return images
    c, n, ch, h, w = images.shape
    k = n // (factor * factor)
    rows_h = [len(t) for t in torch.tensor_split(torch.arange(h), factor)]
    cols_w = [len(t) for t in torch.tensor_split(torch.arange(w), factor)]
    x = images.reshape(c * k, factor * factor, ch, h, w)
    out = torch.empty(c * k, ch, h, w, dtype=images.dtype, device=images.device)
    t, y0 = 0, 0
    for th in rows_h:
        x0 = 0
        for tw in cols_w:
            out[:, :, y0:y0 + th, x0:x0 + tw] = F.interpolate(x[:, t], size=(th, tw), mode="bilinear",
                                                              align_corners=False, antialias=True)
            t, x0 = t + 1, x0 + tw
        y0 += th
    return out.view(c, k, ch, h, w)


class IDM(DM):
    name = "idm"
    Config = IDMConfig

    def setup(self, data, generator):
        f = self.config.factor
        if f < 1 or f > min(data.images.shape[2:]):
            raise CondenseError(f"IDM factor must be between 1 and the image size, got {f}")
        full = self.init_images(data, self.config.ipc * f * f, generator)
        self.queue: deque = deque(maxlen=self.config.queue_size)
        self._pushed = 0
        return partition(full, f)

    def decode(self, syn):
        return expand(syn, self.config.factor)

    def _push_net(self):
        net = self.new_net(10**6 + self._pushed)  # seeds apart from DM-style per-iteration nets
        self._pushed += 1
        opt = torch.optim.SGD(net.parameters(), lr=self.config.lr_net, momentum=0.9, weight_decay=5e-4)
        self.queue.append({"net": net, "opt": opt, "correct": 0, "seen": 0})

    def _train_queue(self, generator):
        """One SGD step on a real batch for `train_nets` networks of the queue; track each one's accuracy."""
        cfg = self.config
        n = self.bank.images.shape[0]
        for _ in range(min(cfg.train_nets, len(self.queue))):
            entry = self.queue[int(torch.randint(len(self.queue), (1,), generator=generator))]
            idx = torch.randint(n, (min(cfg.batch_train, n),), generator=generator).to(self.device)
            x, y = self.bank.images[idx], self.bank.labels[idx]
            if self.dsa is not None:
                x = self.dsa(x, generator)
            net = entry["net"]
            net.train()
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            entry["opt"].zero_grad(set_to_none=True)
            loss.backward()
            entry["opt"].step()
            entry["correct"] += int((logits.argmax(1) == y).sum())
            entry["seen"] += len(y)

    def step(self, it, syn, opt, generator):
        cfg = self.config
        if it % cfg.net_interval == 0:
            self._push_net()
        self._train_queue(generator)
        entry = self.queue[int(torch.randint(len(self.queue), (1,), generator=generator))]
        net = entry["net"]
        acc = entry["correct"] / entry["seen"] if entry["seen"] else 0.0
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            real = self.bank.sample(cfg.batch_real, generator)
            full = self.decode(syn)
            real_a, syn_a = self.augment_pair(real, full, generator)
            loss = self.matching_loss(net, real_a, syn_a)
            if cfg.ce_weight > 0 and acc > 0:
                logits = net(syn_a.flatten(0, 1))
                loss = loss + cfg.ce_weight * acc * F.cross_entropy(logits, self.syn_labels(syn_a.shape[1]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            for p in net.parameters():
                p.requires_grad_(True)
        return float(loss.detach())
