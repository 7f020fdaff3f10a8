"""Choose how to cut a ranking on held-out data: keep the best scores, or the CCS coverage-centric cut.

Neither cut wins at every kept share: on the digits pruning curve the CCS cut beats EL2N's best scores by 4-23
points at 10-30 % kept and trails them by 0.2-0.7 at 50-90 % (BENCHMARKS.md, issue 20). The CCS paper tunes its cut
per dataset and kept share by a grid search; `choose_cut` makes that choice per run, on the user's own data: hold
out a class-stratified share, cut the ranking of the rest both ways at the run's kept share, train the proxy network
on each cut, and keep the cut whose network scores better on the held-out share. It costs one proxy training per
candidate; the final cut is then made on the whole ranking.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from selector.core.errors import SettingsError
from selector.core.ranking import Ranking, resolve_budget, select
from selector.core.stratified import Stratified
from vision.data import ImageData, split
from vision.prune.base import ProxyConfig
from vision.train import train

__all__ = ["CutChoice", "choose_cut"]

CANDIDATES = ("best scores", "ccs")


@dataclass(frozen=True)
class CutChoice:
    """Settings of the choice: `ccs` is the CCS candidate (its hard cut, strata, ...), `val_share` the
    class-stratified share of the data held out to compare the cuts, `min_steps` the fewest SGD steps a candidate's
    network trains for (a 10 % cut of a small set would otherwise see a few dozen)."""

    ccs: Stratified = field(default_factory=Stratified)
    val_share: float = 0.2
    min_steps: int = 100

    def __post_init__(self):
        if not (np.isfinite(self.val_share) and 0.0 < self.val_share <= 0.5):
            raise SettingsError(f"the held-out share for choosing the cut lies in (0, 0.5], got {self.val_share}")
        if int(self.min_steps) != self.min_steps or self.min_steps < 0:
            raise SettingsError(f"min_steps must be a non-negative integer, got {self.min_steps}")


def _restrict(ranking: Ranking, positions: np.ndarray) -> Ranking:
    groups = None if ranking.groups is None else ranking.groups[positions]
    return Ranking(ranking.ids[positions], ranking.scores[positions], groups, ranking.source, dict(ranking.meta),
                   ranking.group_weights)


def _val_accuracy(subset: ImageData, val: ImageData, proxy: ProxyConfig, min_steps: int, seed: int) -> float:
    """Best validation accuracy of a fresh proxy network trained on `subset` (its schedule, stretched to
    `min_steps` steps)."""
    steps_per_epoch = math.ceil(len(subset) / proxy.batch_size)
    epochs = max(proxy.epochs, math.ceil(min_steps / steps_per_epoch))
    config = replace(proxy.train_config(seed), epochs=epochs, val_every=max(1, epochs // 4))
    return float(train(proxy.build(subset, seed), subset, config, val=val).val.accuracy)


def choose_cut(data: ImageData, ranking: Ranking, budget: int | float, choice: CutChoice, proxy: ProxyConfig,
               seed: int = 0) -> tuple[Stratified | None, dict]:
    """(the cut to use: None = the best scores, or `choice.ccs`; what was measured) for keeping `budget` of
    `ranking`, a ranking of `data` (same items, same order)."""
    n = len(ranking)
    if len(data) != n or not np.array_equal(ranking.ids, data.ids.numpy()):
        raise SettingsError("choose_cut needs the ranking of `data` itself (same items in the same order)")
    k = resolve_budget(budget, n)
    parts = split(data, (1.0 - choice.val_share, choice.val_share, 0.0), seed=seed)
    fit_pos = np.flatnonzero(np.isin(ranking.ids, parts.train.ids.numpy()))
    k_fit = int(round(k / n * len(fit_pos))) if n else 0
    info = {"val_share": choice.val_share, "fit": len(fit_pos), "val": len(parts.val), "fit_budget": k_fit}
    if k >= n or k_fit >= len(fit_pos):  # keeping everything: the cuts agree
        return None, {**info, "chosen": CANDIDATES[0], "val_accuracy": {}, "reason": "keeps every item"}
    if k_fit < 1 or len(parts.val) < data.num_classes:
        raise SettingsError(f"too few examples to compare the cuts on held-out data ({k_fit} to keep of "
                            f"{len(fit_pos)}, {len(parts.val)} held out); choose the cut yourself: --stratified ccs "
                            f"or leave --stratified out")
    sub = _restrict(ranking, fit_pos)
    scores = {}
    for name, cut in zip(CANDIDATES, (None, choice.ccs)):
        kept = select(sub, k_fit, seed=seed, stratified=cut)
        scores[name] = _val_accuracy(data.subset(fit_pos[kept.indices]), parts.val, proxy, choice.min_steps, seed)
    chosen = max(CANDIDATES, key=lambda c: scores[c])  # a tie keeps the best scores, the simpler cut
    return (None if chosen == CANDIDATES[0] else choice.ccs), {**info, "chosen": chosen, "val_accuracy": scores}
