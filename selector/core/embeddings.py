"""Embedding columns of a score table (`embed-image`, `embed-text`, ...) as one feature matrix for the diversity,
SemDeDup and COINCIDE steps.

Each column's vectors are L2-normalised, and several columns are concatenated and scaled by 1/sqrt(m), so the cosine
of two concatenated rows is the mean of the per-column cosines (image and text weigh the same whatever their
widths). A row that lacks a vector in any column (null, NaN, or a zero vector) becomes a row of NaN: the steps that
use the matrix treat it as having no direction (see `selector.core.diversity`).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.arrow_numpy import to_numpy
from selector.core.diversity import FeatureError

__all__ = ["embedding_matrix", "usable_rows"]


def _vector_column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise FeatureError(f"no embedding column {name!r} in the scores (have: {', '.join(table.column_names[1:]) or 'none'}); "
                           f"score it with `--metrics ...,{name}` or pass another --diversity-features")
    col = table.column(name)
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise FeatureError(f"column {name!r} is a scalar score, not an embedding; use embed-image, embed-text or "
                           "another vector column")
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(col)
    present = to_numpy(col.is_valid())
    lengths = to_numpy(pc.list_value_length(col), null=0)
    dims = np.unique(lengths[present])
    if len(dims) > 1:
        raise FeatureError(f"embedding column {name!r} mixes vector lengths {dims[:4].tolist()}: "
                           "it was not made by one model")
    d = int(dims[0]) if len(dims) else 0
    out = np.full((n, max(d, 1)), np.nan, dtype=np.float32)
    if d and present.any():
        values = to_numpy(pc.cast(pc.list_flatten(col), pa.float32()), null=np.nan)
        out[present] = values.reshape(-1, d)
    return out


def usable_rows(x: np.ndarray) -> np.ndarray:
    """Rows with only finite values and a non-zero norm."""
    return np.isfinite(x).all(axis=1) & (np.abs(x).sum(axis=1) > 0)


def embedding_matrix(table: pa.Table, columns: tuple[str, ...] | list[str]) -> np.ndarray:
    """(n, sum of widths) float32: the named vector columns, each normalised, concatenated (see the module)."""
    if not columns:
        raise FeatureError("no embedding column given")
    parts = []
    for name in columns:
        x = _vector_column(table, name)
        ok = usable_rows(x)
        norms = np.linalg.norm(np.where(ok[:, None], x, 0.0), axis=1)
        x /= np.where(ok, norms, 1.0)[:, None]
        x[~ok] = np.nan
        parts.append(x)
    x = parts[0] if len(parts) == 1 else np.hstack(parts) / np.float32(np.sqrt(len(parts)))
    return np.ascontiguousarray(x, dtype=np.float32)
