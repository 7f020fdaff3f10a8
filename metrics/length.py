"""Answer length in characters: the simplest quality indicator (InstructionGPT-4's length score is 10 x this / max)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.metric_api import Batch, Metric
from metrics.registry import register
from selector.core.arrow_numpy import strings, to_numpy
from selector.core.dedup import string_buffers


@register
class LengthMetric(Metric):
    """Characters (code points) in the answer, all assistant turns included. Longer answers rank higher."""

    name = "length"
    needs = frozenset({"text"})
    uses_torch = False
    columnar = True

    def score_column(self, table: pa.Table) -> np.ndarray:
        column = table.column("answer")
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        parts = [to_numpy(pc.cast(_code_points(c), pa.float64()), null=np.nan) for c in chunks]
        return np.concatenate(parts) if parts else np.zeros(0)

    def score(self, batch: Batch) -> np.ndarray:
        return self.score_column(pa.table({"answer": strings(batch.answers)}))


def _code_points(values: pa.Array) -> pa.Array:
    """Characters per value. `utf8_length` decodes every byte; in ASCII text, which a max over the data buffer
    detects in a quarter of that time, the byte lengths are the answer."""
    offsets, data = string_buffers(values)
    if not len(values) or data[offsets[0]:offsets[-1]].max(initial=0) < 0x80:
        return pc.binary_length(values)
    return pc.utf8_length(values)
