"""DM (distribution matching, Zhao & Bilen, WACV 2023).

Every iteration draws a randomly initialised ConvNet and freezes it; the synthetic images move so that, for every
class, the mean embedding of the (siamese-augmented) synthetic images equals the mean embedding of a real batch.
No network is trained, so an iteration is one forward over real data and one forward/backward over the synthetic
set, done for all classes in a single batch (both forwards in chunks small enough to reuse heap memory: `in_chunks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vision.condense.base import CondenseConfig, Condenser, in_chunks
from vision.condense.distance import mean_embedding_distance

__all__ = ["DMConfig", "DM"]


@dataclass(frozen=True)
class DMConfig(CondenseConfig):
    """DM settings: the paper runs 20,000 iterations with image lr 1.0, DSA on, real initialisation."""

    iterations: int = 20000
    lr_img: float = 1.0
    dsa: bool = True
    init: str = "real"


class DM(Condenser):
    name = "dm"
    Config = DMConfig

    def embed_pair(self, net, real, syn):
        c, m, k = real.shape[0], real.shape[1], syn.shape[1]
        with torch.no_grad():
            e_real = in_chunks(net.embed, net, real.flatten(0, 1)).view(c, m, -1)
        e_syn = in_chunks(net.embed, net, syn.flatten(0, 1)).view(c, k, -1)
        return e_real, e_syn

    def matching_loss(self, net, real, syn):
        e_real, e_syn = self.embed_pair(net, real, syn)
        return mean_embedding_distance(e_real, e_syn)

    def random_net(self, it: int):
        net = self.new_net(it)
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def step(self, it, syn, opt, generator):
        return self.image_update(self.random_net(it), syn, opt, generator)[0]
