"""Exact duplicate detection over Arrow columns, in file order: the first occurrence keeps its place.

Dictionary-encoding a whole column hashes every byte of every value (about 1 s per million 150-byte answers).
Instead, a 64-bit fingerprint per value (its byte length and three 8-byte windows: start, middle, end) is gathered
from the Arrow buffers with NumPy, which costs milliseconds. Equal values have equal fingerprints, so only rows
whose fingerprint repeats can be duplicates; those few are then compared exactly by dictionary encoding.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.arrow_numpy import scalar, to_arrow, to_numpy

_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5], dtype=np.uint64)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
PARALLEL_MIN_ROWS = 1 << 18  # below this, starting threads costs more than they save


def _words(data: np.ndarray) -> np.ndarray:
    """Every 8-byte window of `data` as one little-endian uint64 (a view with a 1-byte stride: no copy)."""
    if len(data) < 8:
        data = np.concatenate([data, np.zeros(8 - len(data), np.uint8)])
    return np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The value offsets (len + 1, the array's own slice; int32, or int64 for large types) and the whole data buffer
    (uint8) of a (large_)string/binary array, as zero-copy NumPy views."""
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int64 if wide else np.int32)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _string_fingerprint(arr: pa.Array) -> np.ndarray:
    """uint64 per value of a (large_)string/binary array; nulls fingerprint like ""."""
    offsets, data = string_buffers(arr)
    offsets = offsets.astype(np.int64)
    words = _words(data)
    start, end = offsets[:-1], offsets[1:]
    length = end - start
    if length.min(initial=8) >= 8:  # the usual case: every window lies inside its own value
        head, middle, tail = words[start], words[start + length // 2 - 4], words[end - 8]
    else:
        head_at = np.minimum(start, len(words) - 1)  # a short value at the buffer's very end: read back, then shift
        head = words[head_at] >> ((start - head_at).astype(np.uint64) * np.uint64(8))
        short = length < 8
        keep = (np.uint64(1) << (np.minimum(length, 7).astype(np.uint64) * np.uint64(8))) - np.uint64(1)
        head &= np.where(short, keep, _ALL)
        middle = np.where(short, head, words[np.clip(start + length // 2 - 4, 0, len(words) - 1)])
        tail = np.where(short, head, words[np.clip(end - 8, 0, len(words) - 1)])
    fp = length.astype(np.uint64) * _MIX[0]
    for k, word in enumerate((head, middle, tail), 1):
        fp = (fp ^ word) * _MIX[k]
    return fp


def fingerprint(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A uint64 per row of a string column: equal strings give equal fingerprints. The chunks of a large column
    are fingerprinted on every core (NumPy's gathers release the GIL; they wait on memory, not on compute)."""
    chunks = [c for c in (column.chunks if isinstance(column, pa.ChunkedArray) else [column]) if len(c)]
    threads = min(len(chunks), os.cpu_count() or 1, 4) if len(column) >= PARALLEL_MIN_ROWS else 1
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(_string_fingerprint, chunks))
    else:
        parts = [_string_fingerprint(c) for c in chunks]
    return np.concatenate(parts) if parts else np.empty(0, np.uint64)


def _codes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Dense integer codes of a column's values (equal values, equal codes; null is a value of its own)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.binary_join(column, scalar("\x00"))  # a null list stays null
    enc = pc.dictionary_encode(column, null_encoding="encode")
    return to_numpy(enc.indices).astype(np.int64)


def _later_repeats(key: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Among row positions `candidates` (ascending), those whose key appeared at an earlier candidate, and the
    position of that first occurrence."""
    _, first_idx, inverse = np.unique(key, return_index=True, return_inverse=True)
    first_pos = candidates[first_idx[inverse]]
    later = first_pos != candidates
    return candidates[later], first_pos[later]


def row_key(columns: list[pa.ChunkedArray | pa.Array]) -> np.ndarray:
    """One uint64 per row from the string columns' fingerprints (list columns are left to the exact step)."""
    key = np.zeros(len(columns[0]), np.uint64)
    for col in columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            key = key * _MIX[3] + fingerprint(col)
    return key


def repeats(columns: list[pa.ChunkedArray], rows: np.ndarray, key: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Among row positions `rows` (ascending), those whose values in every column equal an earlier row's, and
    the position of that earlier (first) row. Rows are prefiltered by `row_key(columns)` (pass `key` if it is
    already known: the reader computes it while parsing), then the few candidates are compared exactly."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) < 2:
        return rows[:0], rows[:0]
    fp = row_key(columns) if key is None else key
    if len(rows) != len(fp):  # rows are ascending and distinct: of equal length they are all the rows
        fp = fp[rows]
    ordered = np.sort(fp)  # a radix sort of integers: several times faster than hashing them
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated) == 0:
        return rows[:0], rows[:0]
    candidates = rows[np.isin(fp, repeated)]
    if len(candidates) < 2:
        return rows[:0], rows[:0]
    take = to_arrow(candidates)
    exact = np.zeros(len(candidates), dtype=np.int64)
    for col in columns:
        codes = _codes(col.take(take))
        exact = np.unique(exact * (int(codes.max()) + 1) + codes, return_inverse=True)[1].astype(np.int64).ravel()
    return _later_repeats(exact, candidates)


def _identity(column: pa.ChunkedArray) -> tuple:
    """The memory a column's values live in: equal identities mean the very same values."""
    return tuple((str(c.type), c.offset, len(c), *(b.address if b is not None else 0 for b in c.buffers()))
                 for c in column.chunks)


# Id columns already found distinct, by identity, each with its buffers: holding them keeps their addresses from
# being reused by other data. A selection checks the same ids in the reader, the scorer and the ranking; each is a
# public API's own guard, and this lets the later ones answer at once.
_DISTINCT: "OrderedDict[tuple, list]" = OrderedDict()
_DISTINCT_MAX = 4
_DISTINCT_LOCK = threading.Lock()


def note_distinct(column: pa.ChunkedArray | pa.Array) -> None:
    """Record that no value of `column` repeats (its caller has just checked)."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    with _DISTINCT_LOCK:
        _DISTINCT[_identity(column)] = [c.buffers() for c in column.chunks]
        while len(_DISTINCT) > _DISTINCT_MAX:
            _DISTINCT.popitem(last=False)


def all_distinct(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether no value of a string column repeats (an id column's uniqueness check)."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    with _DISTINCT_LOCK:
        if _identity(column) in _DISTINCT:
            return True
    distinct = len(repeats([column], np.arange(len(column)))[0]) == 0
    if distinct:
        note_distinct(column)
    return distinct
