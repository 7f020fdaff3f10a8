"""Train a ViT with any mix of the three onion levels through `vision.train.train`, timing the training.

    result = run_onion(splits, OnionConfig(vit=OnionViTConfig(keep_ratio=0.7, attn_ratio=0.3),
                                           example=ExampleLevelConfig(drop=0.2, every=5, max_swaps=3), epochs=20))

The whole run is ONE call of the shared training loop, so one optimiser (its AdamW moments / SGD momentum) and one
lr schedule span every epoch in every variant. The example level plugs in through the loop's per-epoch active set
(`train(..., active=...)`): `ExampleSwapHook` hands the selector's active positions to each epoch and, at the end of
every `example.every`-th epoch (at most `example.max_swaps` times, never after the last), swaps the active set and
logs the swap. Forgetting events are counted online by `vision.prune.ForgettingTracker` (the forgetting ranker's
hook) on training-set positions, and turned into a `Ranking` for the selector (`selector.core.ranking.select`) at each
swap.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from selector.core.ranking import Ranking
from vision.data import ImageData, Splits
from vision.onion.examples import DynamicExampleSelector, ExampleLevelConfig, Swap
from vision.onion.vit import OnionViTConfig, build_onion_vit, token_counts
from vision.prune.forgetting import ForgettingTracker
from vision.train import Hook, TrainConfig, evaluate, train

log = logging.getLogger(__name__)

__all__ = ["OnionConfig", "OnionResult", "run_onion", "ExampleSwapHook"]


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


def _forgetting_ranking(tracker, labels: np.ndarray) -> Ranking:
    """Forgetting counts over training positions (never-learned = most forgotten), grouped by class."""
    counts = tracker.counts().double().numpy()
    return Ranking(ids=np.arange(len(counts)), scores=counts, groups=labels, source="forgetting")


class ExampleSwapHook(Hook):
    """The example level inside one training loop: `positions(epoch)` is the loop's per-epoch active set (the
    selector's current one), and `on_epoch` swaps it, ranked by `tracker`'s forgetting counts, when the selector says
    a swap is due after that epoch (and it is not the last of `epochs`). Every swap is logged."""

    def __init__(self, selector: DynamicExampleSelector, tracker: "ForgettingTracker", labels: np.ndarray, epochs: int):
        self.selector, self.tracker, self.labels, self.epochs = selector, tracker, labels, epochs

    def positions(self, epoch: int) -> np.ndarray:
        return self.selector.active

    def on_epoch(self, info) -> None:
        done = info.epoch + 1
        if done < self.epochs and self.selector.due(done):
            swap = self.selector.swap(_forgetting_ranking(self.tracker, self.labels), done)
            log.info("epoch %d: swapped %d least-forgotten examples (forgetting counts %s..%s) for %d set-aside ones",
                     done, len(swap.removed), swap.removed_scores.min(initial=0), swap.removed_scores.max(initial=0),
                     len(swap.restored))


def run_onion(splits: Splits, config: OnionConfig = OnionConfig()) -> OnionResult:
    """Train the onion ViT on `splits.train` with the configured levels; evaluate on val and test."""
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
    swapper = ExampleSwapHook(selector, tracker, data.labels.numpy(), config.epochs)
    tc = TrainConfig(epochs=config.epochs, optimizer=config.optimizer, lr=config.lr, momentum=config.momentum,
                     weight_decay=config.weight_decay, batch_size=config.batch_size, decay_at=config.decay_at,
                     seed=config.seed, device=config.device, progress=config.progress)
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(net, data, tc, hooks=[tracker, swapper], active=swapper.positions)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    net = result.net
    history = [{k: v for k, v in h.items() if k != "examples"} | {"active": h["examples"]} for h in result.history]
    processed = sum(h["active"] for h in history)
    device = next(net.parameters()).device
    return OnionResult(net=net, config=config, train_seconds=seconds, train_cpu_seconds=cpu_seconds, images_processed=processed, n_train=n,
                       val_accuracy=evaluate(net, splits.val, device=device).accuracy,
                       test_accuracy=evaluate(net, splits.test, device=device).accuracy,
                       swaps=list(selector.swaps), history=history, tokens=token_counts(vit))
