"""Answer length in characters: the simplest quality indicator (InstructionGPT-4's length score is 10 x this / max)."""
from __future__ import annotations

import numpy as np

from metrics.base import Batch, Metric
from metrics.registry import register


@register
class LengthMetric(Metric):
    """Characters in the answer (all assistant turns). Longer answers rank higher."""

    name = "length"
    needs = frozenset({"text"})
    uses_torch = False

    def score(self, batch: Batch) -> np.ndarray:
        return np.array([len(a) for a in batch.answers], dtype=np.float64)
