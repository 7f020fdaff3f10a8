"""Score tables (Parquet, one row per record id, a column per metric) lined up with records."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from selector.core.arrow_numpy import to_arrow


def align_scores(scores: pa.Table, ids: list[str]) -> pa.Table:
    """Rows of `scores` in the order of `ids`; ids absent from the table get nulls (scored later or ranked last)."""
    index = {rid: i for i, rid in enumerate(scores.column("id").to_pylist())}
    pos = np.array([index.get(rid, -1) for rid in ids], dtype=np.int64)
    return scores.take(to_arrow(pos, mask=pos < 0))
