"""Measure the label runs' learning rate instead of guessing it: a pilot fine-tunes ONE label subset at each
candidate rate and keeps the rate whose run scores best on the held-out data.

The right LoRA rate depends on the base model (2e-4 suits a 7B VLM; the tiny demo VLM barely moves at that rate,
so every subset gets the base model's score and the labels carry no signal). The pilot's run at the chosen rate is
the very run that labels that subset with that seed, so it is reused, not repeated.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selector.learned.labels import LabelFn, genuine_labels

log = logging.getLogger(__name__)

DEFAULT_GRID = (3e-4, 1e-3, 3e-3, 1e-2)


@dataclass(frozen=True)
class PilotResult:
    lr: float
    labels: dict[float, float]  # candidate rate -> the pilot subset's label
    subset: int
    seed: int

    def line(self) -> str:
        tried = ", ".join(f"{lr:g}: {v:.4g}" for lr, v in self.labels.items())
        return f"label lr {self.lr:g}, measured by a pilot on subset {self.subset}, seed {self.seed} ({tried})"

    def to_dict(self) -> dict:
        return {"lr": self.lr, "labels": {f"{k:g}": v for k, v in self.labels.items()}, "subset": self.subset,
                "seed": self.seed, "how": "pilot"}


def needs_pilot(label_fn) -> bool:
    """True for a dataclass label function whose `lr` is still None."""
    return dataclasses.is_dataclass(label_fn) and getattr(label_fn, "lr", 0) is None


def pilot_lr(records, rows: np.ndarray, subsets: np.ndarray, label_fn: LabelFn, cache_dir: Path,
             grid: tuple[float, ...] = DEFAULT_GRID, seed: int = 0, progress: bool = True) -> PilotResult:
    """Label subset 0 with `seed` at every rate in `grid` (cached like any label) and keep the best; the smaller
    rate wins a tie."""
    if not grid:
        raise ValueError("the learning-rate pilot needs at least one candidate rate")
    only_first = np.where(np.asarray(subsets) == 0, 0, -1)
    labels = {}
    for lr in sorted(grid):
        res = genuine_labels(records, rows, only_first, dataclasses.replace(label_fn, lr=lr), cache_dir, (seed,),
                             progress=False)
        labels[lr] = float(res.per_seed[0, 0])
        log.info("pilot: lr %g -> label %.4g", lr, labels[lr])
    best = max(labels, key=lambda lr: (labels[lr], -lr))
    return PilotResult(best, labels, 0, seed)
