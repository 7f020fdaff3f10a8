"""Coverage-centric selection (CCS, Zheng et al., ICLR 2023) for any ranking: `select(..., stratified=Stratified())`.

Keeping only the top of a difficulty score (EL2N, forgetting, GraNd) collapses below random at small budgets: the
kept set covers only the hard end of the distribution. CCS keeps coverage:

1. prune the hardest `beta` share first (the likeliest mislabelled examples);
2. split the remaining score range into `strata` equal-width bins (one per slot when fewer slots than bins);
3. hand the budget to the bins evenly, smallest bin first (a bin smaller than its even share gives the rest to the
   larger bins), and sample uniformly at random inside each bin (seeded; `within="hardest"` takes each bin's
   share from its hardest items instead: tried on the digits curve's validation split, no significant gain, so not
   the default).

"Hardest" is the end of the score the ranking keeps first (higher = keep): for EL2N, GraNd and forgetting the high
scores are the hard examples. Per group (class) when the selection has groups: each group's quota is filled by CCS
inside that group. The result is exactly the budget: when the hard cut leaves too few items, the least hard of the
cut come back first, and items without a score (NaN) only fill what nothing else can.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selector.core.errors import SettingsError

__all__ = ["Stratified", "ccs_beta", "ccs_pick"]

# The default hard cut by kept share, as (smallest kept share it applies to, β): none from 50% kept, 0.1 below. The
# CCS paper tunes β per dataset and rate (for CIFAR-10: 0 down to 50% kept, 0.1 at 20-30%, 0.3 at 10%). On the digits
# pruning curve's validation split (benchmarks/ccs_validation.py, BENCHMARKS.md) 0.1 beat the paper's 0.3 at 10% kept
# for EL2N by 2.2 +- 0.5 points with no significant change for forgetting; elsewhere the change was within noise or
# the two scores disagreed (β = 0 at 20% helped EL2N, hurt forgetting). Noisier data wants a larger cut: pass `beta`.
BETA_SCHEDULE = ((0.5, 0.0), (0.0, 0.1))
WITHIN = ("random", "hardest")


def ccs_beta(kept_share: float) -> float:
    """The default hard-cut share for a selection keeping `kept_share` of the items."""
    for at_least, beta in BETA_SCHEDULE:
        if kept_share >= at_least:
            return beta
    return BETA_SCHEDULE[-1][1]


def _bins(values: np.ndarray, strata: int) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(len(values), dtype=np.int64)
    return np.minimum(((values - lo) / (hi - lo) * strata).astype(np.int64), strata - 1)


def ccs_pick(scores: np.ndarray, k: int, beta: float, strata: int, rng: np.random.Generator,
             within: str = "random") -> np.ndarray:
    """Positions of `k` items of `scores` (higher = harder = kept first by the ranking) chosen by CCS; inside a
    stratum `within` = "random" samples uniformly (the paper), "hardest" takes the highest scores first."""
    n = len(scores)
    k = min(int(k), n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    scored = np.flatnonzero(~np.isnan(scores))
    unscored = np.flatnonzero(np.isnan(scores))
    # hardest first; ties at the cut broken at random (seeded)
    by_hardness = scored[np.lexsort((rng.permutation(len(scored)), -scores[scored]))]
    n_cut = int(np.floor(beta * len(scored)))
    cut, pool = by_hardness[:n_cut], by_hardness[n_cut:]
    if k >= len(pool):  # the cut comes back least hard first, then the unscored at random
        rest = np.concatenate([cut[::-1], rng.permutation(unscored)])
        return np.concatenate([pool, rest[:k - len(pool)]]).astype(np.int64)
    # With fewer slots than strata the smallest-first floor shares hand the sparse strata nothing and every slot
    # goes to the densest ones, the opposite of coverage: use one stratum per slot then.
    bins = _bins(scores[pool], min(strata, k))
    members = [pool[bins == b] for b in range(int(bins.max()) + 1)]
    members = [m for m in members if len(m)]
    members.sort(key=len)  # smallest stratum first (stable: ties keep score order)
    if within == "hardest":
        rank = np.empty(n, dtype=np.int64)  # position in hardness order (ties already broken at random)
        rank[by_hardness] = np.arange(len(by_hardness))

    def take(items: np.ndarray, size: int) -> np.ndarray:
        if within == "hardest":
            return items[np.argsort(rank[items], kind="stable")[:size]]
        return rng.choice(items, size=size, replace=False)

    chosen, left = [], k
    for j, m in enumerate(members):
        share = min(len(m), left // (len(members) - j))
        chosen.append(take(m, share))
        left -= share
    picked = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    if left:  # floor division left a few slots: they go to what the strata did not give (same rule inside)
        picked = np.concatenate([picked, take(np.setdiff1d(pool, picked), left)])
    return picked.astype(np.int64)


@dataclass(frozen=True)
class Stratified:
    """CCS settings for `select`: `beta` = share of the hardest items pruned first (None: by the kept share, see
    `ccs_beta`); `strata` = equal-width score bins (the paper's 50; fewer when a group keeps fewer items); `within`
    = how a stratum's share is taken: "random" (the paper) or "hardest" (highest scores first)."""

    beta: float | None = None
    strata: int = 50
    within: str = "random"

    def __post_init__(self):
        if self.within not in WITHIN:
            raise SettingsError(f"CCS samples inside a stratum by one of {', '.join(WITHIN)}, got {self.within!r}")
        if self.beta is not None and not (np.isfinite(self.beta) and 0.0 <= self.beta < 1.0):
            raise SettingsError(f"the CCS hard-cut share lies in [0, 1), got {self.beta}")
        if int(self.strata) != self.strata or self.strata < 1:
            raise SettingsError(f"CCS needs at least 1 stratum, got {self.strata}")

    def pick(self, scores: np.ndarray, k: int, seed: int, groups: np.ndarray | None = None,
             quotas: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """(chosen positions, a summary for `Selection.info`): CCS over all items, or inside each group for its
        quota (`groups`: an int code per item, `quotas`: per code)."""
        scores = np.asarray(scores, dtype=np.float64)
        n = len(scores)
        beta = ccs_beta(k / n if n else 1.0) if self.beta is None else float(self.beta)
        rng = np.random.default_rng(seed)
        if groups is None:
            chosen = ccs_pick(scores, k, beta, int(self.strata), rng, self.within)
        else:
            parts = []
            for code, quota in enumerate(quotas):
                members = np.flatnonzero(groups == code)
                parts.append(members[ccs_pick(scores[members], int(quota), beta, int(self.strata), rng,
                                                   self.within)])
            chosen = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return chosen, {"beta": beta, "beta_auto": self.beta is None, "strata": int(self.strata),
                        "within": self.within}
