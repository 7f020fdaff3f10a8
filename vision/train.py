"""The one training and evaluation loop for image models (proxy training, pruning scores, condensation evaluation).

    net = build_net("convnet", data.channels, data.num_classes, data.image_size, seed=0)
    result = train(net, splits.train, TrainConfig(epochs=30, seed=0), val=splits.val, hooks=[tracker])
    evaluate(result.net, splits.test).accuracy

Protocol (DC family): SGD, momentum 0.9, weight decay 5e-4, lr x0.1 at half-way, cross-entropy
(`TrainConfig.optimizer="adamw"` swaps in AdamW, e.g. for ViTs, which train poorly under plain SGD). Everything random
(shuffling, augmentation) is drawn from generators seeded by `TrainConfig.seed`; the net's initial weights come from
`build_net(..., seed)`. Checkpoints are chosen on the validation set only: `train` never sees test data.

Scores that need training dynamics (forgetting, EL2N, GraNd, curvature) are hooks on this loop or passes over the
trained net, never copies of it. A hook gets every batch (`on_batch(BatchInfo)`: positions into the training data,
logits, labels, per-example losses) and every epoch end (`on_epoch(EpochInfo)`; return True to stop training).

`train(..., active=f)` trains each epoch on a subset of the training data that may change between epochs (e.g. the
onion's example level): `f(epoch)` is asked at the start of every epoch for the positions to use, so one loop, one
optimiser and one lr schedule serve the whole run. A hook's `on_epoch` can update what `f` returns next.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from selector.core.progress import progress_bar

from vision.data import ImageData
from vision.nets import default_device

__all__ = ["TrainConfig", "OPTIMIZERS", "make_optimizer", "BatchInfo", "EpochInfo", "Hook", "Metrics", "TrainResult", "train", "evaluate",
           "predict", "embeddings", "as_tensors"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
ActiveSet = Callable[[int], Sequence[int] | np.ndarray | torch.Tensor]
TensorPair = tuple[torch.Tensor, torch.Tensor]
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    optimizer: "sgd" (momentum `momentum`, L2 weight decay; the default) or "adamw" (torch.optim.AdamW with
        decoupled `weight_decay`; `momentum` is unused). Both follow the same step schedule (`decay_at`).
    decay_at: fractions of `epochs` after which the lr is multiplied by 0.1 (default: once, half-way).
    augment: optional `f(images, generator) -> images`, applied to each training batch on the device.
    val_every: with validation data, evaluate every `val_every` epochs (and after the last) and keep the weights of
        the best validation accuracy; 0 evaluates only after the last epoch and keeps the last weights.
    """

    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    decay_at: tuple[float, ...] = (0.5,)
    seed: int = 0
    augment: Augment | None = None
    val_every: int = 0
    device: str | None = None
    eval_batch_size: int = 1024
    progress: bool = False
    optimizer: str = "sgd"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid TrainConfig: epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0, got {self.val_every}")


@dataclass(frozen=True)
class BatchInfo:
    """One optimisation step, as hooks see it (all tensors detached, on the training device)."""

    epoch: int  # 0-based
    step: int  # global step, 0-based
    indices: torch.Tensor  # positions of the batch's examples in the training data
    logits: torch.Tensor
    labels: torch.Tensor
    loss: torch.Tensor  # per-example loss


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    loss: float
    n: int


@dataclass(frozen=True)
class EpochInfo:
    epoch: int  # 0-based; the epoch that just finished
    net: nn.Module
    train_loss: float
    train_accuracy: float
    lr: float
    val: Metrics | None = None
    optimizer: torch.optim.Optimizer | None = None  # the run's one optimiser (same object every epoch)
    examples: int = 0  # training examples seen this epoch (all of them, or the active subset's size)


class Hook:
    """Base class for training hooks; override what you need."""

    def on_batch(self, batch: BatchInfo) -> None:
        pass

    def on_epoch(self, info: EpochInfo) -> bool | None:
        """Return True to stop training after this epoch."""
        return None


@dataclass
class TrainResult:
    net: nn.Module  # the selected weights (best validation epoch, or last)
    epochs_run: int
    best_epoch: int  # 0-based epoch whose weights `net` holds (-1: untrained)
    val: Metrics | None
    history: list[dict] = field(default_factory=list)


def as_tensors(data: ImageData | TensorPair) -> TensorPair:
    if isinstance(data, ImageData):
        return data.images, data.labels
    images, labels = data
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return images, labels


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t.to(device, non_blocking=True)


def _hard_labels(labels: torch.Tensor) -> torch.Tensor:
    return labels.argmax(1) if labels.is_floating_point() and labels.ndim == 2 else labels


def _active_positions(positions, n: int, epoch: int) -> torch.Tensor:
    """The 1-D long tensor of an epoch's active positions, checked to be non-empty and inside 0..n-1."""
    idx = torch.as_tensor(np.asarray(positions), dtype=torch.long).cpu()
    if idx.ndim != 1 or len(idx) == 0:
        raise ValueError(f"epoch {epoch}: the active set must be a non-empty 1-D list of positions, got shape "
                         f"{tuple(idx.shape)}")
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ValueError(f"epoch {epoch}: active positions must lie in 0..{n - 1}, got {int(idx.min())}.."
                         f"{int(idx.max())}")
    return idx


def make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by `config.optimizer` over all of `net`'s parameters."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train(net: nn.Module, data: ImageData | TensorPair, config: TrainConfig = TrainConfig(), *,
          val: ImageData | TensorPair | None = None, hooks: Sequence[Hook] = (),
          active: ActiveSet | None = None) -> TrainResult:
    """Train `net` in place on `data` (ImageData, or (images, labels) with hard or soft labels) and return it with
    its history. With `val`, the returned weights are those of the best validation accuracy (see TrainConfig).

    active: optional `f(epoch) -> positions` (0-based epoch; positions into `data`), asked at the start of every
        epoch; that epoch shuffles and trains on those examples only. Hooks still see positions into `data`, and the
        history gains an "examples" count per epoch. Default: every example, every epoch."""
    device = torch.device(config.device) if config.device else default_device()
    images, labels = as_tensors(data)
    n = len(images)
    if n == 0:
        raise ValueError("cannot train on an empty dataset")
    keep_on_device = images.element_size() * images.nelement() <= 2 * 1024**3
    if keep_on_device:
        images, labels = _to_device(images, device), _to_device(labels, device)
    net.to(device)
    opt = make_optimizer(net, config)
    milestones = sorted({max(1, int(round(f * config.epochs))) for f in config.decay_at if 0 < f < 1})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1) if config.augment else None

    best_acc, best_epoch, best_state, best_val = -math.inf, -1, None, None
    history: list[dict] = []
    step = 0
    epochs_run = 0
    last_val: Metrics | None = None
    bar = progress_bar(range(config.epochs), desc="train", unit="epoch", disable=not config.progress, leave=False)
    for epoch in bar:
        net.train()
        if active is None:
            order = torch.randperm(n, generator=shuffle_gen)
        else:
            positions = _active_positions(active(epoch), n, epoch)
            order = positions[torch.randperm(len(positions), generator=shuffle_gen)]
        seen = len(order)
        total_loss, total_correct = 0.0, 0
        for start in range(0, seen, config.batch_size):
            idx = order[start:start + config.batch_size]
            idx_dev = idx.to(images.device)
            x, y = images[idx_dev], labels[idx_dev]
            if not keep_on_device:
                x, y = _to_device(x, device), _to_device(y, device)
            if config.augment is not None:
                x = config.augment(x, aug_gen)
            logits = net(x)
            loss = F.cross_entropy(logits, y, reduction="none")
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            opt.step()
            with torch.no_grad():
                total_loss += float(loss.sum())
                total_correct += int((logits.argmax(1) == _hard_labels(y)).sum())
            if hooks:
                info = BatchInfo(epoch, step, idx.to(device), logits.detach(), y, loss.detach())
                for h in hooks:
                    h.on_batch(info)
            step += 1
        lr = opt.param_groups[0]["lr"]
        sched.step()
        epochs_run = epoch + 1
        last = epochs_run == config.epochs
        val_metrics = None
        if val is not None and (last or (config.val_every and epochs_run % config.val_every == 0)):
            val_metrics = evaluate(net, val, batch_size=config.eval_batch_size, device=device)
            if config.val_every and val_metrics.accuracy > best_acc:
                best_acc, best_epoch, best_val = val_metrics.accuracy, epoch, val_metrics
                best_state = copy.deepcopy(net.state_dict())
        record = {"epoch": epoch, "train_loss": total_loss / seen, "train_accuracy": total_correct / seen, "lr": lr}
        if active is not None:
            record["examples"] = seen
        if val_metrics is not None:
            record.update(val_accuracy=val_metrics.accuracy, val_loss=val_metrics.loss)
        history.append(record)
        last_val = val_metrics
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['train_accuracy']:.3f}")
        stop = False
        if hooks:
            info = EpochInfo(epoch, net, record["train_loss"], record["train_accuracy"], lr, val_metrics,
                             optimizer=opt, examples=seen)
            for h in hooks:
                stop = bool(h.on_epoch(info)) or stop
        if stop and not last:
            if val is not None and val_metrics is None:
                val_metrics = evaluate(net, val, batch_size=config.eval_batch_size, device=device)
                if config.val_every and val_metrics.accuracy > best_acc:
                    best_acc, best_epoch, best_val = val_metrics.accuracy, epoch, val_metrics
                    best_state = copy.deepcopy(net.state_dict())
                last_val = val_metrics
            break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
        final_epoch, final_val = best_epoch, best_val
    else:
        final_epoch = epochs_run - 1
        final_val = last_val
        if val is not None and final_val is None:
            final_val = evaluate(net, val, batch_size=config.eval_batch_size, device=device)
    net.eval()
    return TrainResult(net=net, epochs_run=epochs_run, best_epoch=final_epoch, val=final_val, history=history)


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, *, fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
            batch_size: int = 1024, device: torch.device | str | None = None) -> torch.Tensor:
    """`fn(batch)` (default: the net's logits) over `images` in eval mode, in batches; result on the CPU."""
    device = torch.device(device) if device is not None else next(net.parameters()).device
    fn = fn or net
    was_training = net.training
    net.to(device).eval()
    outs = [fn(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    net.train(was_training)
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def embeddings(net: nn.Module, data: ImageData | torch.Tensor, *, batch_size: int = 1024,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Penultimate features `net.embed(x)` for every image (eval mode), on the CPU."""
    images = data.images if isinstance(data, ImageData) else data
    return predict(net, images, fn=net.embed, batch_size=batch_size, device=device)


def evaluate(net: nn.Module, data: ImageData | TensorPair, *, batch_size: int = 1024,
             device: torch.device | str | None = None) -> Metrics:
    """Accuracy and mean cross-entropy of `net` on `data` (eval mode, no gradients)."""
    images, labels = as_tensors(data)
    if len(images) == 0:
        return Metrics(accuracy=float("nan"), loss=float("nan"), n=0)
    logits = predict(net, images, batch_size=batch_size, device=device)
    labels = labels.cpu()
    loss = F.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == _hard_labels(labels)).float().mean().item()
    return Metrics(accuracy=acc, loss=loss, n=len(images))
