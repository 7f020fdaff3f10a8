"""What every condenser shares: settings, the class-grouped real data, initialisation, the optimisation loop.

A condenser learns `ipc` synthetic images per class. Synthetic images live in one tensor shaped (C, ipc, ch, H, W)
so that matching losses are computed for all classes at once (one forward over every class, per-class statistics
by reshaping) instead of a Python loop per class as in the reference code. Real images are kept on the device,
sorted by class, and sampled per class with one vectorised draw (no per-call Python lists of tensors).

Randomness: one `torch.Generator` seeded from `config.seed` drives real-batch sampling, DSA parameters and
initialisation; network weights come from `build_net(..., seed=net_seed(...))`. Nothing reads the clock.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from selector.core.progress import progress_bar

from selector.core.errors import MmselectError
from vision.condense.dsa import DSA, DSAConfig
from vision.data import ImageData
from vision.nets import ConvNet, ResNet18, build_net, default_device
from vision.prune import build_ranker
from vision.reduction import ReduceError, Reduction, select_per_class

__all__ = ["CondenseError", "CondenseConfig", "ClassBank", "Condenser", "layer_features", "net_seed", "accuracy",
           "in_chunks", "keep_heap_memory", "CHUNK_BYTES"]

# glibc serves every allocation of 32 MiB or more (and, at first, far smaller ones) with freshly mapped pages, which
# the kernel faults in and zeroes on each use. One forward of a DM real batch (2,560 images through ConvNet-128 at
# 28 x 28) makes 1.3 GB activations: about 1.5 million page faults, 40 % of the forward's CPU time spent in the
# kernel. Chunks whose largest activation stays under half that threshold, with glibc told to keep such blocks on
# its heap (`keep_heap_memory`), reuse the same buffers instead (measurements: BENCHMARKS.md, issue 22).
CHUNK_BYTES = 16 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h
_heap_tuned = False


def keep_heap_memory() -> bool:
    """Ask glibc's allocator (once per process) to serve blocks up to 32 MiB from its heap and to keep up to 1 GiB of
    freed heap instead of returning it to the kernel. No-op where the C library is not glibc. Returns whether set.

    Hand-written with ctypes: torch's CPU allocator calls malloc directly and has no caching option of its own."""
    global _heap_tuned
    if _heap_tuned:
        return True
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _heap_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                              2**30))
    except (OSError, AttributeError):
        return False
    return _heap_tuned


class CondenseError(MmselectError):
    """Condensation could not run (bad settings, a class without images, an unknown initialisation)."""


@dataclass(frozen=True)
class CondenseConfig:
    """Settings shared by all condensers (each method subclasses this with its own fields and defaults).

    init: "noise", "real" (random real images of the class) or the name of a pruning ranker from `vision.prune`
        (its best `ipc` images per class); `init_params` go to that ranker.
    iterations: outer iterations (the papers use 1,000 (DC/DSA) to 20,000 (DM); CPU runs use far fewer).
    batch_real: real images per class per step (capped at the smallest class, so every class has the same count).
    dsa: differentiable siamese augmentation on real and synthetic batches during matching.
    net / net_options: the matching network (default ConvNet-3, width 128, instance norm).
    """

    ipc: int = 10
    iterations: int = 200
    init: str = "real"
    init_params: dict[str, Any] = field(default_factory=dict)
    lr_img: float = 0.1
    momentum_img: float = 0.5
    batch_real: int = 256
    dsa: bool = False
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    net: str = "convnet"
    net_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str | None = None
    progress: bool = False

    def __post_init__(self):
        if self.ipc < 1:
            raise CondenseError(f"ipc (images per class) must be >= 1, got {self.ipc}")
        if self.iterations < 0:
            raise CondenseError(f"iterations must be >= 0, got {self.iterations}")
        if self.batch_real < 1 or self.lr_img <= 0:
            raise CondenseError(f"batch_real must be >= 1 and lr_img > 0 (got {self.batch_real}, {self.lr_img})")

    def settings(self) -> dict[str, Any]:
        return asdict(self)


def net_seed(seed: int, *parts: int) -> int:
    """A deterministic network seed for (run seed, iteration, ...)."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


class ClassBank:
    """Real images sorted by class, on the device, sampled C classes at a time."""

    def __init__(self, data: ImageData, device: torch.device):
        labels = data.labels
        counts = torch.bincount(labels, minlength=data.num_classes)
        if (counts == 0).any():
            empty = [data.classes[i] for i in torch.flatnonzero(counts == 0).tolist()]
            raise CondenseError(f"class(es) {empty} have no training images; condensation needs every class")
        order = torch.argsort(labels, stable=True)
        self.images = data.images[order].to(device)
        self.labels = labels[order].to(device)
        self.counts = counts.to(device)
        self.starts = (torch.cumsum(counts, 0) - counts).to(device)
        self.num_classes = data.num_classes
        self.min_count = int(counts.min())
        self.max_count = int(counts.max())
        self.device = device

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(C, m, ch, H, W) with m = min(n, smallest class): m distinct images of every class."""
        m = min(n, self.min_count)
        keys = torch.rand(self.num_classes, self.max_count, generator=generator).to(self.device)
        keys = keys.masked_fill(torch.arange(self.max_count, device=self.device)[None] >= self.counts[:, None], 2.0)
        pos = keys.argsort(1)[:, :m]
        return self.images[self.starts[:, None] + pos]

    def class_images(self, c: int) -> torch.Tensor:
        s = int(self.starts[c])
        return self.images[s:s + int(self.counts[c])]


def layer_features(net: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Intermediate features of every block and the logits, in one forward (hooks, so any net works).

    ConvNet: the output of each conv-norm-relu-pool block. ResNet-18: layer1..layer4. Other nets: the embedding.
    """
    if isinstance(net, ConvNet):
        modules = [m for m in net.features if isinstance(m, nn.AvgPool2d)]
    elif isinstance(net, ResNet18):
        modules = [net.body.layer1, net.body.layer2, net.body.layer3, net.body.layer4]
    else:
        modules = []
    feats: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: feats.append(out)) for m in modules]
    try:
        if modules:
            logits = net(x)
        else:
            emb = net.embed(x)
            feats.append(emb)
            logits = net.classifier(emb)
    finally:
        for h in handles:
            h.remove()
    return feats, logits


def _largest_activation(net: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the largest module output for one image `x[:1]` (forward hooks on the leaf modules)."""
    sizes = [x[:1].numel() * x.element_size()]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


def in_chunks(fn, net: nn.Module, x: torch.Tensor, budget: int | None = None):
    """`fn(x)` computed in row chunks whose largest activation in `net` stays under `budget` bytes (default
    `CHUNK_BYTES`), and joined: a tensor, or a tuple/list of tensors and lists of tensors, concatenated along dim 0.
    Gradients flow as usual.

    Same numbers as one batch up to float rounding, as long as rows do not interact: a net with batch-norm layers
    in training mode (batch statistics) is run in one batch."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in net.modules()) or len(x) <= 1:
        return fn(x)
    rows = max(1, (budget or CHUNK_BYTES) // _largest_activation(net, x))
    if rows >= len(x):
        return fn(x)
    return _join([fn(x[i:i + rows]) for i in range(0, len(x), rows)])


def _join(parts: list):
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    return type(first)(_join([p[j] for p in parts]) for j in range(len(first)))


class Condenser:
    """Base class: `condense(data) -> Reduction`. Subclasses define `step` (one outer iteration, returns its loss)
    and `matching_loss(net, real, syn)` (their objective for one network, real (C, m, ...), syn (C, k, ...))."""

    name = "condenser"
    Config = CondenseConfig

    def __init__(self, config: CondenseConfig | None = None, **overrides):
        config = config or self.Config()
        if overrides:
            config = type(config)(**{**asdict(config), **overrides})
        self.config = config
        self.device = torch.device(config.device) if config.device else default_device()
        self.dsa = DSA(DSAConfig.parse(config.dsa_strategy)) if config.dsa else None

    # ---- pieces subclasses use ---------------------------------------------------------------------------------
    def new_net(self, *seed_parts: int) -> nn.Module:
        net = build_net(self.config.net, self.channels, self.num_classes, self.image_size,
                        seed=net_seed(self.config.seed, *seed_parts), **self.config.net_options)
        return net.to(self.device)

    def augment_pair(self, real: torch.Tensor, syn: torch.Tensor, generator: torch.Generator):
        """Siamese DSA on (C, m, ...) real and (C, k, ...) synthetic batches: one transform per class, shared by the
        class's real and synthetic images, all classes in one call. Identity without DSA. (In the default 'single'
        mode the transform family is drawn once per call, so all classes share the family, not its parameters.)"""
        if self.dsa is None:
            return real, syn
        c, m, k = real.shape[0], real.shape[1], syn.shape[1]
        rg = torch.arange(c, device=real.device).repeat_interleave(m)
        sg = torch.arange(c, device=real.device).repeat_interleave(k)
        r, s = self.dsa.siamese(real.flatten(0, 1), syn.flatten(0, 1), generator, rg, sg, n_groups=c)
        return r.view_as(real), s.view_as(syn)

    def syn_labels(self, k: int) -> torch.Tensor:
        return torch.arange(self.num_classes, device=self.device).repeat_interleave(k)

    def train_augment(self):
        """Per-image DSA for training networks on synthetic data (None without DSA)."""
        return self.dsa

    # ---- initialisation ---------------------------------------------------------------------------------------
    def init_images(self, data: ImageData, k: int, generator: torch.Generator) -> torch.Tensor:
        """(C, k, ch, H, W) initial synthetic images per `config.init`."""
        init = self.config.init.lower()
        c, shape = data.num_classes, data.images.shape[1:]
        if init == "noise":
            return torch.randn((c, k, *shape), generator=generator).to(self.device)
        if init == "real":
            out = []
            for cls in range(c):
                imgs = self.bank.class_images(cls)
                replace = k > len(imgs)
                idx = (torch.randint(len(imgs), (k,), generator=generator) if replace
                       else torch.randperm(len(imgs), generator=generator)[:k]).to(imgs.device)
                out.append(imgs[idx])
            return torch.stack(out)
        try:
            ranking = build_ranker(init, seed=self.config.seed, **self.config.init_params).rank(data)
            sel = select_per_class(ranking, data.labels, k, seed=self.config.seed)
        except ReduceError as exc:
            raise CondenseError(f"init {self.config.init!r}: {exc}; use 'noise', 'real' or a pruning ranker "
                                f"name") from exc
        chosen = data.subset(sel.indices)
        out = []
        for cls in range(c):
            imgs = chosen.images[chosen.labels == cls]
            if len(imgs) < k:  # a class smaller than k: repeat its images
                imgs = imgs[torch.arange(k) % len(imgs)]
            out.append(imgs[:k])
        return torch.stack(out).to(self.device)

    # ---- the loop ------------------------------------------------------------------------------------------------
    def setup(self, data: ImageData, generator: torch.Generator) -> torch.Tensor:
        """Build the synthetic tensor (C, k, ...) to optimise; subclasses may store extra state."""
        return self.init_images(data, self.config.ipc, generator)

    def decode(self, syn: torch.Tensor) -> torch.Tensor:
        """The training images a synthetic tensor stands for (identity except for IDM)."""
        return syn

    def make_optimizer(self, syn: torch.Tensor) -> torch.optim.Optimizer:
        return torch.optim.SGD([syn], lr=self.config.lr_img, momentum=self.config.momentum_img)

    def step(self, it: int, syn: torch.Tensor, opt: torch.optim.Optimizer, generator: torch.Generator) -> float:
        raise NotImplementedError

    def image_update(self, net: nn.Module, syn: torch.Tensor, opt: torch.optim.Optimizer,
                     generator: torch.Generator) -> tuple[float, torch.Tensor]:
        """One optimiser step on the synthetic images against a fresh real batch, both augmented alike.
        Returns the matching loss and the (unaugmented) real batch it used."""
        real = self.bank.sample(self.config.batch_real, generator)
        real_a, syn_a = self.augment_pair(real, syn, generator)
        loss = self.matching_loss(net, real_a, syn_a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), real

    def matching_loss(self, net: nn.Module, real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _prepare(self, data: ImageData) -> None:
        if len(data) == 0:
            raise CondenseError("cannot condense an empty dataset")
        self.channels, self.image_size = data.channels, data.image_size
        self.num_classes = data.num_classes
        self.bank = ClassBank(data, self.device)

    def condense(self, data: ImageData):
        cfg = self.config
        self._prepare(data)
        if self.device.type == "cpu":
            keep_heap_memory()
        generator = torch.Generator().manual_seed(cfg.seed)
        syn = self.setup(data, generator).detach().clone().requires_grad_(True)
        opt = self.make_optimizer(syn)
        history: list[dict] = []
        start = time.perf_counter()
        bar = progress_bar(range(cfg.iterations), desc=self.name, unit="it", disable=not cfg.progress, leave=False)
        for it in bar:
            loss = self.step(it, syn, opt, generator)
            history.append({"iteration": it, "loss": float(loss)})
            bar.set_postfix(loss=f"{loss:.4f}")
        seconds = time.perf_counter() - start
        images = self.decode(syn.detach()).flatten(0, 1).cpu()
        per_class = images.shape[0] // self.num_classes
        labels = torch.arange(self.num_classes).repeat_interleave(per_class)
        settings = {"method": self.name, **cfg.settings(), "seconds": seconds,
                    "iterations_per_s": cfg.iterations / seconds if seconds > 0 else float("nan"),
                    "real_per_class": min(cfg.batch_real, self.bank.min_count), "device": str(self.device),
                    "dataset": data.name, "image_shape": list(data.images.shape[1:])}
        stored = syn.detach().flatten(0, 1).cpu() if images.shape[0] != syn.shape[0] * syn.shape[1] else None
        return Reduction(images, labels, data.classes, data.mean, data.std, self.name, cfg.ipc, settings, history,
                         stored)

    @torch.no_grad()
    def probe_loss(self, data: ImageData, images: torch.Tensor, seeds=(0, 1, 2), batch_real: int = 64) -> float:
        """The condenser's matching objective for the synthetic images `images` (C*k, ...) in a fixed setting:
        networks from `seeds`, one fixed real batch, no augmentation. Deterministic, so runs can be compared."""
        self._prepare(data)
        gen = torch.Generator().manual_seed(12345)
        real = self.bank.sample(batch_real, gen)
        syn = images.to(self.device).view(self.num_classes, -1, *images.shape[1:])
        total = 0.0
        for s in seeds:
            net = build_net(self.config.net, self.channels, self.num_classes, self.image_size, seed=s,
                            **self.config.net_options).to(self.device)
            with torch.enable_grad():
                total += float(self.matching_loss(net, real, syn).detach())
        return total / len(seeds)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())
