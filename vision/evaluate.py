"""The one evaluation protocol for every reduced dataset (pruning Selection, condensation Reduction, or a subset).

Train fresh networks on the reduced set with `vision.train.train` (SGD momentum 0.9, weight decay 5e-4, lr x0.1
half-way), optionally with DSA augmentation; choose each network's weights on the VALIDATION split (best
validation epoch); only then measure test accuracy. Report mean +- std over N networks x M reduced sets.
Cross-architecture evaluation is the `net` setting (e.g. "resnet18").

    result = evaluate_reduced([red_seed0, red_seed1], splits, EvalConfig(models=5, epochs=300))
    print(result.line())   # "91.3 ± 0.8 (n=10)"
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from vision.data import ImageData, Splits
from vision.reduction import as_image_data

__all__ = ["EvalConfig", "EvalResult", "evaluate_sets", "evaluate_reduced"]


@dataclass(frozen=True)
class EvalConfig:
    """Protocol settings. The DC papers train 300 epochs without augmentation and 1000 with DSA; `val_every`
    (default: epochs // 10) sets how often the validation split is checked for the best weights."""

    net: str = "convnet"
    net_options: dict[str, Any] = field(default_factory=dict)
    models: int = 5
    epochs: int = 300
    lr: float = 0.01
    batch_size: int = 256
    dsa: bool = False
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    val_every: int | None = None
    seed: int = 0
    device: str | None = None
    progress: bool = False

    def __post_init__(self):
        if self.models < 1 or self.epochs < 1:
            raise ValueError(f"evaluation needs models >= 1 and epochs >= 1, got {self.models}, {self.epochs}")


@dataclass
class EvalResult:
    test_accuracy: np.ndarray  # (M sets, N networks)
    val_accuracy: np.ndarray
    best_epoch: np.ndarray
    config: EvalConfig
    train_sizes: list[int]

    @property
    def mean(self) -> float:
        return float(self.test_accuracy.mean())

    @property
    def std(self) -> float:
        return float(self.test_accuracy.std())

    def line(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f} (n={self.test_accuracy.size})"

    def to_dict(self) -> dict[str, Any]:
        return {"test_accuracy": self.test_accuracy.tolist(), "val_accuracy": self.val_accuracy.tolist(),
                "best_epoch": self.best_epoch.tolist(), "mean": self.mean, "std": self.std,
                "train_sizes": self.train_sizes, "config": asdict(self.config)}


def _seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0] % (2**31 - 1))


def evaluate_sets(train_sets: Sequence[ImageData], val: ImageData, test: ImageData,
                  config: EvalConfig = EvalConfig()) -> EvalResult:
    """Train `config.models` fresh networks on each training set; weights chosen on `val`, accuracy on `test`."""
    from selector.core.progress import progress_bar

    from vision.condense.dsa import DSA, DSAConfig
    from vision.nets import build_net
    from vision.train import TrainConfig, evaluate, train

    if not train_sets:
        raise ValueError("no training sets to evaluate")
    augment = DSA(DSAConfig.parse(config.dsa_strategy)) if config.dsa else None
    val_every = config.val_every if config.val_every is not None else max(1, config.epochs // 10)
    m, n = len(train_sets), config.models
    test_acc, val_acc, best = np.zeros((m, n)), np.zeros((m, n)), np.zeros((m, n), dtype=np.int64)
    bar = progress_bar(total=m * n, desc="evaluate", unit="net", disable=not config.progress, leave=False)
    for i, data in enumerate(train_sets):
        if data.images.shape[1:] != test.images.shape[1:]:
            raise ValueError(f"training set {i} has images {tuple(data.images.shape[1:])}, the test split "
                             f"{tuple(test.images.shape[1:])}")
        for j in range(n):
            net = build_net(config.net, data.channels, test.num_classes, data.image_size, seed=_seed(config.seed, i, j),
                            **config.net_options)
            tc = TrainConfig(epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, augment=augment,
                             val_every=val_every, seed=_seed(config.seed, i, j, 1), device=config.device)
            result = train(net, (data.images, data.labels), tc, val=val)
            test_acc[i, j] = evaluate(result.net, test).accuracy
            val_acc[i, j] = result.val.accuracy if result.val is not None else float("nan")
            best[i, j] = result.best_epoch
            bar.update(1)
    bar.close()
    return EvalResult(test_acc, val_acc, best, config, [len(d) for d in train_sets])


def evaluate_reduced(results: Sequence[Any] | Any, splits: Splits, config: EvalConfig = EvalConfig()) -> EvalResult:
    """Evaluate Selections (of `splits.train`), Reductions or ImageData sets with the one protocol."""
    if not isinstance(results, (list, tuple)):
        results = [results]
    sets = [as_image_data(r, splits.train) for r in results]
    return evaluate_sets(sets, splits.val, splits.test, config)

