"""References to images stored inside the input itself (Parquet / Arrow cells, tar members), and reading them.

A record's `images` column holds names. For images on disk a name is a path relative to the images root; for an
embedded image it is a reference that starts with a NUL byte (which no file path can contain, so the two can never
be confused, and a JSON record naming such a "path" is rejected by the path checks), then the fields that locate
the bytes, NUL-separated:

    \\0tar\\0FILE\\0OFFSET\\0SIZE                   a tar member's data
    \\0pq\\0FILE\\0ROW_GROUP\\0ROW\\0COLUMN\\0INDEX    a Parquet cell (INDEX: position in a list column, -1 if none)
    \\0arrow\\0FILE\\0BATCH\\0ROW\\0COLUMN\\0INDEX     an Arrow IPC (save_to_disk / HF cache) cell

A reference is a plain string, so it travels to decoder and DataLoader worker processes like a path. Reading one
loads at most one row group (or record batch) column per process, kept in a two-entry cache, since workers take
contiguous runs of rows: the bytes of a large dataset are never all in memory.
"""
from __future__ import annotations

import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

PREFIX = "\x00"
_CACHE: "OrderedDict[tuple, object]" = OrderedDict()  # the last chunks read (a row group's column, a file's batches)
_FILES: "OrderedDict[str, object]" = OrderedDict()  # open Parquet files: their footers are parsed once
_CACHE_PID = [os.getpid()]
_CACHE_MAX = 2


def tar_ref(file: str | Path, offset: int, size: int) -> str:
    return f"{PREFIX}tar{PREFIX}{file}{PREFIX}{offset}{PREFIX}{size}"


def cell_ref(kind: str, file: str | Path, chunk: int, row: int, column: str, index: int = -1) -> str:
    """A Parquet (`kind` 'pq': `chunk` is the row group) or Arrow ('arrow': the record batch) cell's image."""
    return f"{PREFIX}{kind}{PREFIX}{file}{PREFIX}{chunk}{PREFIX}{row}{PREFIX}{column}{PREFIX}{index}"


def is_ref(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_ref(ref: str) -> list[str]:
    return ref[1:].split(PREFIX)


def ref_file(ref: str) -> str:
    """The file that holds the referenced bytes."""
    return parse_ref(ref)[1]


def describe(ref: str) -> str:
    """A reference in words, for rejection reasons: `shard-0.tar @ 1536`, `train.parquet row 17 image[1]`."""
    parts = parse_ref(ref)
    name = os.path.basename(parts[1])
    if parts[0] == "tar":
        return f"{name} @ byte {parts[2]}"
    return f"{name} {'row group' if parts[0] == 'pq' else 'batch'} {parts[2]} row {parts[3]} column {parts[4]}" + \
        (f"[{parts[5]}]" if parts[5] != "-1" else "")


def _cached(key: tuple, load):
    if _CACHE_PID[0] != os.getpid():  # a forked worker: never share open files or buffers with the parent
        _CACHE.clear()
        _FILES.clear()
        _CACHE_PID[0] = os.getpid()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = load()
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return value


def _arrow_batches(file: str) -> list:
    """The record batches of an Arrow IPC file (stream or file format), memory-mapped: no copy is made."""
    import pyarrow as pa

    source = pa.memory_map(file)
    try:
        return pa.ipc.open_stream(source).read_all().to_batches()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(file)).read_all().to_batches()


def _column_chunk(kind: str, file: str, chunk: int, column: str):
    import pyarrow.parquet as pq

    def parquet_file():
        if file not in _FILES:
            _FILES[file] = pq.ParquetFile(file)
            while len(_FILES) > 8:
                _FILES.popitem(last=False)
        return _FILES[file]

    if kind == "pq":
        return _cached(("pq", file, chunk, column),
                       lambda: parquet_file().read_row_group(chunk, columns=[column]).column(0).combine_chunks())
    batches = _cached(("arrow", file), lambda: _arrow_batches(file))
    return batches[chunk].column(column)


def cell_bytes(value) -> bytes | None:
    """The image bytes of one cell value: raw bytes, or an HF `Image` struct's `bytes` field."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, (bytes, bytearray)) or value is None else None


def read_ref(ref: str, max_bytes: int | None = None) -> bytes:
    """The referenced image bytes; ValueError when the reference no longer resolves or exceeds `max_bytes`."""
    parts = parse_ref(ref)
    if parts[0] == "tar":
        offset, size = int(parts[2]), int(parts[3])
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"image member larger than {max_bytes >> 20} MiB")
        with open(parts[1], "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise ValueError(f"tar member cut short ({len(data)} of {size} bytes)")
        return data
    kind, file, chunk, row, column, index = parts
    import pyarrow as pa

    cell = _column_chunk(kind, file, int(chunk), column)[int(row)]
    if int(index) >= 0:
        if not cell.is_valid or int(index) >= len(cell.values):
            raise ValueError("no image at this list position")
        cell = cell.values[int(index)]

    if isinstance(cell, pa.StructScalar):
        cell = cell["bytes"] if "bytes" in [f.name for f in cell.type] else None
    if cell is None or not cell.is_valid:
        raise ValueError("no image bytes in the cell")
    data = cell.as_buffer() if hasattr(cell, "as_buffer") else None
    if max_bytes is not None and data is not None and data.size > max_bytes:
        raise ValueError(f"image bytes larger than {max_bytes >> 20} MiB")
    return data.to_pybytes() if data is not None else cell.as_py()


def image_file(root: str | Path | None, name: str) -> str | BinaryIO:
    """What to open for a record's image: the path under `root`, or the embedded bytes as a file object."""
    if is_ref(name):
        return io.BytesIO(read_ref(name))
    return os.path.join(root or "", name)


def image_stamp(root: str | None, name: str) -> str:
    """An image's identity for score caches: the file's (or the holding shard's) size and mtime in ns."""
    try:
        st = os.stat(ref_file(name) if is_ref(name) else os.path.join(root or "", name))
    except (OSError, ValueError):
        return "absent"
    return f"{st.st_size}:{st.st_mtime_ns}"
