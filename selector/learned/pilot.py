"""Measure the label runs' learning rate instead of guessing it: a pilot labels a few subsets that span the design,
with two seeds, at each candidate rate. Among the rates whose labels tell those subsets apart beyond the seed noise
(the F-test the full labels get, at `PILOT_ALPHA`), it keeps the one that separates them most (the largest spread of
their labels): the rate at which what a subset holds changes the fine-tuned model most, reproducibly.

The right LoRA rate depends on the base model: 2e-4 suits a 7B VLM, while the tiny demo VLM barely moves at that
rate, so every subset gets the base model's score and the labels carry no signal; too high a rate makes runs blow up
at random. The pilot's runs at the chosen rate are ordinary label runs of those subsets, so they are reused.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selector.learned.labels import LabelFn, genuine_labels
from selector.learned.signal import label_signal

log = logging.getLogger(__name__)

DEFAULT_GRID = (2e-4, 1e-3, 3e-3)  # the usual LoRA rate for large VLMs, then 5x and 15x for small ones
PILOT_ALPHA = 0.05  # the pilot's table is small (4 subsets x 2 seeds), so its F-test is read at 5 %


@dataclass(frozen=True)
class PilotResult:
    lr: float
    tried: dict[float, dict]  # candidate rate -> {"spread", "f_stat", "p_value"} of the pilot subsets' labels
    subsets: list[int]
    seeds: tuple[int, ...]
    reproducible: bool  # False: no rate passed the F-test, so the rate with the largest F was kept

    def line(self) -> str:
        tried = ", ".join(f"{lr:g}: spread {t['spread']:.3g}, p {t['p_value']:.2g}" for lr, t in self.tried.items())
        how = "largest spread among reproducible rates" if self.reproducible else "no rate reproducible; largest F"
        return (f"label lr {self.lr:g}, measured by a pilot on subsets {self.subsets} x seeds "
                f"{','.join(map(str, self.seeds))}: {how} ({tried})")

    def to_dict(self) -> dict:
        return {"lr": self.lr, "tried": {f"{k:g}": v for k, v in self.tried.items()}, "subsets": self.subsets,
                "seeds": list(self.seeds), "reproducible": self.reproducible, "how": "pilot"}


def needs_pilot(label_fn) -> bool:
    """True for a dataclass label function whose `lr` is still None."""
    return dataclasses.is_dataclass(label_fn) and getattr(label_fn, "lr", 0) is None


def spanning_subsets(design: np.ndarray, n: int) -> list[int]:
    """`n` subsets spread along the first principal axis of their mean design vectors (both ends included)."""
    k = len(design)
    n = min(n, k)
    centred = design - design.mean(axis=0)
    if not np.any(centred):
        return list(range(n))
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    order = np.argsort(centred @ axis, kind="stable")
    return sorted(int(order[i]) for i in np.unique(np.round(np.linspace(0, k - 1, n)).astype(int)))


def pilot_lr(records, rows: np.ndarray, subsets: np.ndarray, label_fn: LabelFn, cache_dir: Path,
             design: np.ndarray, grid: tuple[float, ...] = DEFAULT_GRID, seeds: tuple[int, ...] = (0, 1),
             n_subsets: int = 4) -> PilotResult:
    """Label `n_subsets` spanning subsets with `seeds` at every rate in `grid` (cached like any label); keep the rate
    with the largest label spread among those that pass the F-test, or the largest F when none does (the smaller
    rate wins a tie). `design` (k, d): each subset's mean design vector."""
    if not grid:
        raise ValueError("the learning-rate pilot needs at least one candidate rate")
    if len(seeds) < 2:
        raise ValueError("the learning-rate pilot needs two seeds to tell signal from noise")
    chosen = spanning_subsets(np.asarray(design, dtype=np.float64), n_subsets)
    keep = {s: j for j, s in enumerate(chosen)}
    only = np.array([keep.get(int(s), -1) for s in subsets])
    tried = {}
    for lr in sorted(grid):
        res = genuine_labels(records, rows, only, dataclasses.replace(label_fn, lr=lr), cache_dir, tuple(seeds[:2]),
                             progress=False, names=chosen)
        sig = label_signal(res.per_seed, PILOT_ALPHA, scale="none")  # spreads compared across rates: raw scale
        tried[lr] = {"spread": sig.spread, "f_stat": sig.f_stat if np.isfinite(sig.f_stat) else 0.0,
                     "p_value": sig.p_value if np.isfinite(sig.p_value) else 1.0, "ok": sig.ok}
        log.info("pilot: lr %g -> spread %.4g, F %.2f, p %.3g (labels %s)", lr, sig.spread, tried[lr]["f_stat"],
                 tried[lr]["p_value"], np.round(res.per_seed, 4).tolist())
    good = [lr for lr in tried if tried[lr]["ok"]]
    if good:
        best = max(good, key=lambda lr: (tried[lr]["spread"], -lr))
    else:
        best = max(tried, key=lambda lr: (tried[lr]["f_stat"], -lr))
    return PilotResult(best, tried, chosen, tuple(seeds[:2]), bool(good))
