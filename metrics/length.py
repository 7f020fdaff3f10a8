"""Answer length in characters: the simplest quality indicator (InstructionGPT-4's length score is 10 x this / max)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metrics.base import Batch, Metric
from metrics.registry import register
from selector.arrow_numpy import strings, to_numpy


@register
class LengthMetric(Metric):
    """Characters (code points) in the answer, all assistant turns included. Longer answers rank higher."""

    name = "length"
    needs = frozenset({"text"})
    uses_torch = False
    columnar = True

    def score_column(self, table: pa.Table) -> np.ndarray:
        return to_numpy(pc.cast(pc.utf8_length(table.column("answer")), pa.float64()), null=np.nan)

    def score(self, batch: Batch) -> np.ndarray:
        return self.score_column(pa.table({"answer": strings(batch.answers)}))
