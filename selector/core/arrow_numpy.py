"""NumPy <-> Arrow conversions that build and read Arrow buffers directly.

pyarrow imports pandas the first time `pa.array`, `pa.scalar` (and so any compute call given a Python value) or
`Array.to_numpy` runs: its NumPy bridge shares pandas' conversion code. That import costs 0.2-0.4 s on our
machine, a quarter of a whole million-record selection that never needs pandas (BENCHMARKS.md, I/O section). These
helpers cover what the selection path converts: 1-d numeric and boolean arrays, lists of Python strings, and
scalars for compute calls. Everything else may still use pyarrow's own converters.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa


def _bits(mask: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(np.asarray(mask, dtype=bool), bitorder="little"))


def _unbits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(buffer, np.uint8), count=offset + n, bitorder="little")
    return bits[offset:].view(np.bool_)


def to_arrow(values: np.ndarray, *, mask: np.ndarray | None = None) -> pa.Array:
    """A 1-d numeric or boolean NumPy array as an Arrow array (zero-copy for numbers); `mask` marks nulls."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1:
        raise ValueError(f"to_arrow takes a 1-d array, got shape {values.shape}")
    validity = None
    if mask is not None and np.any(mask):
        validity = _bits(~np.asarray(mask, dtype=bool))
    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(values), [validity, _bits(values)])
    arrow_type = pa.from_numpy_dtype(values.dtype)
    if values.dtype.kind not in "iuf":
        raise TypeError(f"to_arrow converts numbers and booleans, not {values.dtype}")
    return pa.Array.from_buffers(arrow_type, len(values), [validity, pa.py_buffer(values)])


def to_numpy(column: pa.Array | pa.ChunkedArray, *, null=None) -> np.ndarray:
    """A numeric or boolean Arrow column as NumPy (a read-only view where the layouts agree). Nulls become `null`;
    a column with nulls and no `null` given raises, as `to_numpy(zero_copy_only=True)` would."""
    if isinstance(column, pa.ChunkedArray):
        parts = [to_numpy(chunk, null=null) for chunk in column.chunks]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0, _dtype(column.type))
    n, offset = len(column), column.offset
    validity, data = column.buffers()[:2]
    if pa.types.is_boolean(column.type):
        values = _unbits(data, offset, n) if n else np.zeros(0, np.bool_)
    else:
        dtype = _dtype(column.type)
        values = np.frombuffer(data, dtype)[offset:offset + n] if n else np.zeros(0, dtype)
    if column.null_count:
        if null is None:
            raise ValueError(f"column of {column.type} has {column.null_count} nulls and no fill value was given")
        values = np.where(_unbits(validity, offset, n), values, null).astype(values.dtype, copy=False)
    return values


def _dtype(arrow_type: pa.DataType) -> np.dtype:
    if pa.types.is_boolean(arrow_type):
        return np.dtype(np.bool_)
    if not (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)):
        raise TypeError(f"to_numpy converts numbers and booleans, not {arrow_type}")
    return np.dtype(arrow_type.to_pandas_dtype())  # a NumPy type for these; pandas itself is not imported


def strings(values: Sequence[str | None]) -> pa.Array:
    """Python strings (None = null) as an Arrow string array (large_string past 2 GiB of text)."""
    n = len(values)
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    encoded = [v.encode("utf-8") if v is not None else b"" for v in values]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=offsets[1:])
    wide = offsets[-1] >= 2**31
    return pa.Array.from_buffers(pa.large_string() if wide else pa.string(), n,
                                 [None if valid.all() else _bits(valid),
                                  pa.py_buffer(offsets if wide else offsets.astype(np.int32)),
                                  pa.py_buffer(b"".join(encoded))])


def scalar(value: str | bool | int | float) -> pa.Scalar:
    """A scalar for compute calls (a plain Python value there would go through `pa.scalar`)."""
    if isinstance(value, str):
        return strings([value])[0]
    return to_arrow(np.array([value]))[0]
