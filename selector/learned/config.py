"""THE configuration of a learned selector. `mmselect train-selector` and the demo both start from these defaults,
which are the settings the benchmarks support (BENCHMARKS.md, learned selector). Light on purpose: building the CLI
imports it, so it must not import torch."""
from __future__ import annotations

from dataclasses import dataclass, field

from selector.learned.choice import ChoiceConfig
from selector.learned.features import FeatureConfig
from selector.learned.final import ClusterConfig
from selector.learned.pilot import DEFAULT_GRID

LR_RULES = ("derive", "pilot")
from selector.learned.signal import AGGREGATES, TRANSFORMS
from selector.learned.subsets import METHODS


@dataclass(frozen=True)
class TrainConfig:
    """Defaults chosen on label data only (repeated 5-fold CV of held-out subset labels, DigitsVQA demo, 20 subsets x
    2 LoRA seeds; benchmarks/results/selector.md): the ridge warm start, lr 1e-3 (the paper's 0.01 departs further
    from the linear start than these labels support) and a 5-net CV ensemble had the best CV R^2 of the settings tried."""

    epochs: int = 20
    lr: float = 1e-3
    batch_subsets: int = 1  # one optimiser step per subset (set-level regression has few examples)
    val_fraction: float = 0.2
    patience: int | None = None  # stop after this many epochs without improvement (None: run all epochs)
    standardise_labels: bool = True  # regress (label - mean) / std: labels spread over a narrow range
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (0: plain Adam)
    # "ridge": start from the InstructMining fit (ridge on the training subsets' mean features, alpha `ridge_alpha`)
    # written into the linear path (needs zero-initialised residual branches); "none": PyTorch's random init.
    warm_start: str = "ridge"
    ridge_alpha: float = 1.0
    ensemble: int = 5  # members averaged; with >= 2, member m validates on fold m of a K-fold split of the subsets
    # "pooled": every member keeps the same epoch, the one with the lowest out-of-fold error pooled over the members'
    # folds (so those errors are a cross-validation of the whole ensemble); "member": each its own best epoch.
    epoch_choice: str = "pooled"
    seed: int = 0


@dataclass(frozen=True)
class LabelConfig:
    """How the label subsets are made and labelled (BENCHMARKS.md, learned selector, says why each default).
    `metric`, `epochs` and `lr` configure the label function (`finetune.label.FinetuneLabel`); `lr=None` runs the
    learning-rate pilot."""

    n_subsets: int = 20
    # Metric strata: each subset holds one region of the quality-metric space, so the subsets' labels span the
    # range the selector must learn. Random subsets all sit near the pool mean; k-means on image embeddings follows
    # content (on DigitsVQA, the digit classes), so a subset's label says which content it holds.
    subset_method: str = "metrics"
    # With "metrics": centre the metrics within each content cluster (spectral, on the image embedding) and give
    # every subset each cluster in proportion, so a subset's label measures quality, not which content it holds.
    balance_content: bool = True
    seeds: tuple[int, ...] = (0, 1)  # >= 2 measure the label noise, which the signal test needs
    aggregate: str = "median"
    # Labels enter the fit as normal scores of their ranks: the selector needs their order, and a LoRA run that blows
    # up on one subset then weighs like any other bad subset instead of deciding the fit alone.
    transform: str = "rank"
    # Continuous, so a small LoRA run moves it measurably, where exact match moves in whole answers.
    metric: str = "eval_loss"
    epochs: float = 3.0
    lr: float | None = None
    # How the rate is found when `lr` is None: "derive" asks the label function (FinetuneLabel: from the base
    # model's width); "pilot" measures it on a few subsets (selector.learned.pilot), at 16 extra runs.
    lr_rule: str = "derive"
    lr_grid: tuple[float, ...] = DEFAULT_GRID
    pilot_subsets: int = 4
    signal_alpha: float = 0.01  # the F-test's level: labels must vary across subsets beyond the seed noise
    subset_seed: int | None = None  # seed of the subsets (default: the selector's); fix it to share labels

    def __post_init__(self):
        if self.subset_method not in METHODS:
            raise ValueError(f"unknown subset method {self.subset_method!r}; choose one of {', '.join(METHODS)}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"unknown label aggregate {self.aggregate!r}; choose one of {', '.join(AGGREGATES)}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown label transform {self.transform!r}; choose one of {', '.join(TRANSFORMS)}")
        if self.lr_rule not in LR_RULES:
            raise ValueError(f"unknown learning-rate rule {self.lr_rule!r}; choose one of {', '.join(LR_RULES)}")
        if self.n_subsets < 2:
            raise ValueError(f"need at least 2 label subsets, got {self.n_subsets}")
        if not self.seeds:
            raise ValueError("need at least one label seed")


@dataclass(frozen=True)
class SelectorConfig:
    """Everything about the selector except where its data lives."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    d_model: int = 16
    n_layers: int = 2
    n_heads: int = 4
    block: str = "preact"  # residual Linear block, see NetworkConfig
    zero_init_residual: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    passes: int = 8
    seed: int = 0


