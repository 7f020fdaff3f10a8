"""Train a ViT with any mix of the three onion levels through `vision.train.train`, timing the training.

    result = run_onion(splits, OnionConfig(vit=OnionViTConfig(keep_ratio=0.7, attn_ratio=0.3),
                                           example=ExampleLevelConfig(drop=0.2, every=5, max_swaps=3), epochs=20))

The run is split into phases at the swap epochs (every `example.every` epochs, at most `example.max_swaps` times),
each phase one call of the shared training loop on the phase's active subset. The phase boundaries are the same
whether the example level is on or off (`example.drop == 0`), so dense and sparse runs see the same schedule: the lr
schedule of one uninterrupted run is reproduced across phases; the optimiser's state (SGD momentum, AdamW moments)
restarts at each boundary, in every variant alike.
Forgetting events are counted online by `vision.prune.ForgettingTracker` (the forgetting ranker's hook) on training
-set positions, and turned into a `Ranking` for the selector at each swap.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from selector.ranking import Ranking
from vision.data import ImageData, Splits
from vision.onion.examples import DynamicExampleSelector, ExampleLevelConfig, Swap
from vision.onion.vit import OnionViTConfig, build_onion_vit, token_counts
from vision.train import BatchInfo, Hook, TrainConfig, evaluate, train

log = logging.getLogger(__name__)

__all__ = ["OnionConfig", "OnionResult", "run_onion", "phase_bounds", "phase_schedule", "Reindex"]


@dataclass(frozen=True)
class OnionConfig:
    """One onion training run. A level is off when its ratio is 1.0 (token, attention) or `example.drop` is 0.

    optimizer / lr / weight_decay: AdamW (DeiT's optimiser) at lr 3e-3 with decoupled weight decay 0.05 by default,
    because small ViTs under plain SGD can sit at chance for many epochs (one of three benchmark seeds did). lr 3e-3
    beat 1e-3 on the benchmark ViT at 12 epochs (dense 96.3% vs 87.4% test, seed 2). `optimizer="sgd"` (with
    `momentum`; lr ~0.05, weight_decay ~5e-4) is the shared loop's DC-family protocol. See `vision.train.TrainConfig`.
    """

    vit: OnionViTConfig = field(default_factory=OnionViTConfig)
    example: ExampleLevelConfig = field(default_factory=lambda: ExampleLevelConfig(drop=0.0))
    epochs: int = 30
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    batch_size: int = 64
    decay_at: tuple[float, ...] = (0.5,)
    seed: int = 0
    device: str | None = None
    progress: bool = False

    def __post_init__(self):
        from vision.train import OPTIMIZERS

        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")

    @property
    def levels(self) -> tuple[str, ...]:
        on = []
        if self.example.drop > 0:
            on.append("example")
        if self.vit.keep_ratio < 1:
            on.append("token")
        if self.vit.attn_ratio < 1:
            on.append("attention")
        return tuple(on)


@dataclass
class OnionResult:
    net: torch.nn.Module
    config: OnionConfig
    train_seconds: float  # wall time inside the training loop only (no evaluation)
    train_cpu_seconds: float  # CPU time of this process over the same span (robust to other jobs on the machine)
    images_processed: int  # training images forwarded and back-propagated
    n_train: int
    val_accuracy: float
    test_accuracy: float
    swaps: list[Swap]
    history: list[dict]
    tokens: list[tuple[int, int]]

    @property
    def throughput(self) -> float:
        """Training images processed per second."""
        return self.images_processed / self.train_seconds

    @property
    def epoch_throughput(self) -> float:
        """Full training set x epochs per second: the time-to-train measure (counts the example level's saving)."""
        return self.n_train * self.config.epochs / self.train_seconds

    def summary(self) -> dict:
        return {"levels": list(self.config.levels), "config": asdict(self.config),
                "train_seconds": self.train_seconds, "train_cpu_seconds": self.train_cpu_seconds,
                "cpu_throughput": self.images_processed / self.train_cpu_seconds, "images_processed": self.images_processed,
                "n_train": self.n_train, "throughput": self.throughput, "epoch_throughput": self.epoch_throughput,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "tokens_per_block": self.tokens, "swaps": [s.as_dict() for s in self.swaps],
                "history": self.history}


class Reindex(Hook):
    """Forwards batches to `hook` with positions in a subset mapped back to positions in the full training set."""

    def __init__(self, hook: Hook, positions: np.ndarray):
        self.hook = hook
        self.positions = torch.as_tensor(positions, dtype=torch.long)

    def on_batch(self, batch: BatchInfo) -> None:
        idx = self.positions[batch.indices.cpu()].to(batch.indices.device)
        self.hook.on_batch(BatchInfo(batch.epoch, batch.step, idx, batch.logits, batch.labels, batch.loss))

    def on_epoch(self, info):
        return self.hook.on_epoch(info)


def phase_bounds(epochs: int, example: ExampleLevelConfig) -> list[int]:
    """Epoch counts where phases end: every `example.every` epochs (at most `max_swaps` boundaries), then `epochs`."""
    cuts = [e for e in range(example.every, epochs, example.every)][:example.max_swaps]
    return cuts + [epochs]


def phase_schedule(epochs: int, lr: float, decay_at: tuple[float, ...], start: int, end: int) -> tuple[float, tuple]:
    """(lr, decay_at) for the phase [start, end) so that the phases together follow one run's step schedule."""
    milestones = sorted({max(1, int(round(f * epochs))) for f in decay_at if 0 < f < 1})
    phase_lr = lr * 0.1 ** sum(m <= start for m in milestones)
    inner = tuple((m - start) / (end - start) for m in milestones if start < m < end)
    return phase_lr, inner


def _forgetting_ranking(tracker, labels: np.ndarray) -> Ranking:
    """Forgetting counts over training positions (never-learned = most forgotten), grouped by class."""
    counts = tracker.counts().double().numpy()
    return Ranking(ids=np.arange(len(counts)), scores=counts, groups=labels, source="forgetting")


def run_onion(splits: Splits, config: OnionConfig = OnionConfig()) -> OnionResult:
    """Train the onion ViT on `splits.train` with the configured levels; evaluate on val and test."""
    from vision.prune import ForgettingTracker

    data: ImageData = splits.train
    vit = config.vit
    if (data.channels, data.image_size, data.num_classes) != (vit.in_chans, vit.img_size, vit.num_classes):
        raise ValueError(f"the ViT expects {vit.in_chans}x{vit.img_size}x{vit.img_size} images and "
                         f"{vit.num_classes} classes; the data has {data.channels}x{data.image_size}x"
                         f"{data.image_size} and {data.num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = build_onion_vit(vit)
    n = len(data)
    selector = DynamicExampleSelector(n, config.example)
    tracker = ForgettingTracker(n)
    labels = data.labels.numpy()
    seconds, cpu_seconds, processed, start = 0.0, 0.0, 0, 0
    history: list[dict] = []
    bounds = phase_bounds(config.epochs, config.example)
    for phase, end in enumerate(bounds):
        active = selector.active
        lr, decay = phase_schedule(config.epochs, config.lr, config.decay_at, start, end)
        tc = TrainConfig(epochs=end - start, optimizer=config.optimizer, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay,
                         batch_size=config.batch_size, decay_at=decay, seed=config.seed * 1000 + phase,
                         device=config.device, progress=config.progress)
        t0, c0 = time.perf_counter(), time.process_time()
        result = train(net, data.subset(active), tc, hooks=[Reindex(tracker, active)])
        seconds += time.perf_counter() - t0
        cpu_seconds += time.process_time() - c0
        net = result.net
        processed += len(active) * (end - start)
        for h in result.history:
            history.append({**h, "epoch": start + h["epoch"], "phase": phase, "active": len(active)})
        if end < config.epochs and selector.due(end):
            swap = selector.swap(_forgetting_ranking(tracker, labels), end)
            log.info("epoch %d: swapped %d least-forgotten examples (forgetting counts %s..%s) for %d set-aside ones",
                     end, len(swap.removed), swap.removed_scores.min(initial=0), swap.removed_scores.max(initial=0),
                     len(swap.restored))
        start = end
    device = next(net.parameters()).device
    return OnionResult(net=net, config=config, train_seconds=seconds, train_cpu_seconds=cpu_seconds, images_processed=processed, n_train=n,
                       val_accuracy=evaluate(net, splits.val, device=device).accuracy,
                       test_accuracy=evaluate(net, splits.test, device=device).accuracy,
                       swaps=list(selector.swaps), history=history, tokens=token_counts(vit))
