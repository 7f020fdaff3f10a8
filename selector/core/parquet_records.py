"""Parquet shards and Arrow tables (`datasets.save_to_disk`, the HF datasets cache) as instruction records, read
one chunk at a time and written back as Parquet with the input's schema.

Schemas recognised (names can be mapped with `columns`, e.g. {"id": "uid", "image": "img", "conversations": "chat"}):
  - LLaVA / LLaVA-OneVision: `conversations` (a list of {from, value} or {role, content}, or its JSON text),
    optional `id`, `image` / `images`, any other columns (e.g. `data_source`);
  - the_cauldron: `texts` (a list of {user, assistant, source}) and `images`: every text is one user turn and one
    answer, so multi-turn and multi-image records stay whole.
An image cell is an HF `Image` struct ({bytes, path}), raw bytes, a path relative to the images root, or a list of
any of these. Embedded bytes become `selector.core.embedded` references, decoded like files (in worker processes,
pixel-capped); a path goes through the same containment checks as a JSON record's.

Memory: the input is read one chunk (a Parquet row group, an Arrow record batch) at a time, two at once, and only
ids, texts, image names and 64-bit fingerprints are kept; image bytes are hashed (for the duplicate check) and
dropped, then re-read one chunk at a time by the decoder processes.

Ids: the id column's strings (integers as their text). A row without one gets `SHARD#ROW`: the shard's path
relative to the input folder (a single file: its name) and the row's 0-based position in that shard; stable as
long as the shard is. Text is validated as UTF-8 (Parquet readers do not check it); a cell that is not costs its
row. The per-row verdicts are the JSON reader's: clean chunks go through the same vectorised checks as JSONL
(`fastjsonl.conversation_rows`), the rest through `formats.parse_conversations`.
"""
from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.arrow_numpy import scalar, strings, to_arrow, to_numpy
from selector.core.dedup import fingerprint, row_key
from selector.core.embedded import cell_ref
from selector.core.errors import FormatError
from selector.core.fastjsonl import conversation_rows
from selector.core.formats import ID_KINDS, Layout, Parsed, parse_conversations, shown
from selector.core.io import atomic_path
from selector.core.records import (SCHEMA, Columns, RecordSet, finish_source_records, group_text,
                                   mark_duplicate_ids, mark_repeats, valid_positions)
from selector.core.sources import Source

ROLES = ("id", "image", "conversations", "texts")
_TURN_FIELDS = ("from", "role", "value", "content")
_SEP_TURN = "\x1f"


def schema_difference(first: pa.Schema, other: pa.Schema) -> str:
    """What differs between two shards' schemas, in words: the first column missing, extra or of another type,
    else the order."""
    a, b = dict(zip(first.names, first.types)), dict(zip(other.names, other.types))
    for name in first.names:
        if name not in b:
            return f"no column {name!r}"
        if a[name] != b[name]:
            return f"column {name!r} is {b[name]}, not {a[name]}"
    extra = [n for n in other.names if n not in a]
    if extra:
        return f"an extra column {extra[0]!r}"
    return "the same columns in another order" if first.names != other.names else "other field settings"


@dataclass(frozen=True)
class TableLayout:
    """Which columns hold what: `kind` is 'conversations' or 'texts' (the_cauldron)."""

    kind: str
    text_column: str
    id_column: str | None
    image_columns: tuple[str, ...]
    group_column: str | None = None  # a top-level column, or "texts.source" (the_cauldron's first text's source)

    def read_columns(self) -> list[str]:
        cols = [self.text_column, *self.image_columns]
        if self.id_column:
            cols.append(self.id_column)
        if self.group_column and self.group_column != "texts.source" and self.group_column not in cols:
            cols.append(self.group_column)
        return cols


def _string_like(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _list_like(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _bytes_like(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or _string_like(t)


def _image_type_ok(t: pa.DataType) -> bool:
    """An image column's type: bytes, a path, or an HF Image struct whose `bytes` are bytes and `path` a string
    (either may be all-null), or a list of these. A struct holding numbers there is a wrong column, not a row's
    problem."""
    if _list_like(t):
        t = t.value_type
    if pa.types.is_struct(t):
        fields = {f.name: f.type for f in t}
        return bool({"bytes", "path"} & set(fields)) and \
            all(pa.types.is_null(ft) or (_bytes_like(ft) if name == "bytes" else _string_like(ft))
                for name, ft in fields.items() if name in ("bytes", "path"))
    return _bytes_like(t)


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with dictionary-encoded columns as their value types: what `Tables.read_plain` returns."""
    return pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema],
                     metadata=schema.metadata)


def plain_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with its dictionary-encoded columns decoded (a Parquet writer keeps a dictionary-encoded string
    column so; its values are plain strings to the reader)."""
    if not any(pa.types.is_dictionary(t) for t in batch.schema.types):
        return batch
    return pa.RecordBatch.from_arrays([c.dictionary_decode() if pa.types.is_dictionary(c.type) else c
                                       for c in batch.columns], schema=plain_schema(batch.schema))


def detect_layout(schema: pa.Schema, columns: dict[str, str], group_by: str | None, where: str) -> TableLayout:
    """The `TableLayout` of a table schema, with `columns` (role -> column) overriding the usual names. Columns are
    judged by their values' type (a dictionary-encoded string column is a string column)."""
    schema = plain_schema(schema)
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise FormatError(f"--columns: unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
    names = schema.names
    for role, col in columns.items():
        if col not in names:
            raise FormatError(f"{where}: --columns {role}={col}, but there is no column {col!r} "
                              f"(columns: {', '.join(names)})")
    hint = ("map yours with --columns, e.g. --columns id=uid,image=img,conversations=chat "
            f"(columns: {', '.join(names)})")
    if "conversations" in columns or ("texts" not in columns and "conversations" in names):
        kind, text = "conversations", columns.get("conversations", "conversations")
        t = schema.field(text).type
        if not (_string_like(t) or (_list_like(t) and pa.types.is_struct(t.value_type))):
            raise FormatError(f"{where}: column {text!r} is {t}, not a list of {{from, value}} turns; {hint}")
    elif "texts" in columns or "texts" in names:
        kind, text = "texts", columns.get("texts", "texts")
        t = schema.field(text).type
        if not (_list_like(t) and pa.types.is_struct(t.value_type)
                and {"user", "assistant"} <= {f.name for f in t.value_type}):
            raise FormatError(f"{where}: column {text!r} is {t}, not a list of {{user, assistant}} texts; {hint}")
    else:
        raise FormatError(f"{where}: no conversations or texts column; {hint}")
    if "image" in columns:
        images = (columns["image"],)
    else:
        images = tuple(c for c in ("image", "images") if c in names)
    for col in images:
        if not _image_type_ok(schema.field(col).type):
            raise FormatError(f"{where}: image column {col!r} is {schema.field(col).type}, not image bytes, an "
                              f"HF Image {{bytes, path}}, a path, or a list of these; {hint}")
    id_col = columns.get("id", "id" if "id" in names else None)
    if id_col is not None:
        t = schema.field(id_col).type
        if not (_string_like(t) or pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise FormatError(f"{where}: id column {id_col!r} is {t}, not strings or integers; {hint}")
    group = None
    if group_by:
        if group_by in names:
            group = group_by
        elif kind == "texts" and group_by == "source" and "source" in {f.name for f in schema.field(text).type.value_type}:
            group = "texts.source"
        else:
            raise FormatError(f"--group-by {group_by}: {where} has no such column (columns: {', '.join(names)})")
    return TableLayout(kind, text, id_col, images, group)


# ------------------------------------------------------------------------------------------------ the input's chunks
class Tables:
    """The files of a Parquet or Arrow source, read one chunk (row group / record batch) at a time."""

    def __init__(self, source: Source):
        import pyarrow.parquet as pq

        self.source, self.kind = source, source.kind
        self._local = threading.local()
        self.handles: list[Any] = []
        self.chunk_rows: list[list[int]] = []
        for f in source.files:
            try:
                if self.kind == "parquet":
                    pf = pq.ParquetFile(f)
                    self.handles.append(pf)
                    self.chunk_rows.append([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
                else:
                    batches = _arrow_batches(f)
                    self.handles.append(batches)
                    self.chunk_rows.append([b.num_rows for b in batches])
            except (pa.ArrowException, OSError) as exc:
                raise FormatError(f"{f}: not a readable {'Parquet' if self.kind == 'parquet' else 'Arrow'} file "
                                  f"({str(exc).splitlines()[0][:200]})") from None
        self.schema = self.schema_of(0)
        for i in range(1, len(source.files)):
            if not self.schema_of(i).equals(self.schema, check_metadata=False):
                raise FormatError(f"{source.files[i]}: its columns differ from {source.files[0]}'s "
                                  f"({schema_difference(self.schema, self.schema_of(i))}); pass shards of one "
                                  "dataset, written with one schema")

    def __getstate__(self) -> dict:
        """A Parquet source's tables travel to other processes (a cluster engine's read tasks) without their open
        handles; each process opens the files it reads (`_parquet`)."""
        if self.kind != "parquet":
            raise TypeError("only a Parquet source's tables can be sent to another process")
        return {k: v for k, v in self.__dict__.items() if k not in ("_local", "handles")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _local=threading.local(), handles=[])

    def schema_of(self, i: int) -> pa.Schema:
        h = self.handles[i]
        return h.schema_arrow if self.kind == "parquet" else (h[0].schema if h else pa.schema([]))

    def chunks(self) -> Iterator[tuple[int, int, int]]:
        """(file, chunk, first row of the chunk in its file) for every chunk, in order."""
        for fi, sizes in enumerate(self.chunk_rows):
            start = 0
            for ci, n in enumerate(sizes):
                yield fi, ci, start
                start += n

    def _parquet(self, fi: int):
        """This thread's handle on Parquet file `fi` (a ParquetFile is not meant to be read by two threads)."""
        import pyarrow.parquet as pq

        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = {}
        if fi not in handles:
            handles[fi] = pq.ParquetFile(self.source.files[fi])
        return handles[fi]

    def read(self, fi: int, ci: int, columns: list[str] | None) -> pa.RecordBatch:
        """Chunk `ci` of file `fi` (all columns, or `columns`) as one record batch."""
        if self.kind != "parquet":
            batch = self.handles[fi][ci]
            return batch.select(columns) if columns is not None else batch
        try:
            table = self._parquet(fi).read_row_group(ci, columns=columns, use_threads=False)
        except (pa.ArrowException, OSError) as exc:
            raise FormatError(f"{self.source.files[fi]}: row group {ci} cannot be read "
                              f"({str(exc).splitlines()[0][:200]}); the file is damaged") from None
        return one_batch(table)

    def read_plain(self, fi: int, ci: int, columns: list[str] | None) -> pa.RecordBatch:
        """`read`, dictionary-encoded columns decoded: the values the reader interprets (the writer copies `read`'s
        columns as they are stored)."""
        return plain_batch(self.read(fi, ci, columns))


def one_batch(table: pa.Table) -> pa.RecordBatch:
    """A table as a single record batch (its columns combined)."""
    batches = table.combine_chunks().to_batches()
    if len(batches) == 1:
        return batches[0]
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in table.schema], schema=table.schema)


def _arrow_batches(path: Path) -> list[pa.RecordBatch]:
    """An Arrow IPC file's record batches, memory-mapped (datasets writes the stream format)."""
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_stream(source).read_all().to_batches()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all().to_batches()


# ------------------------------------------------------------------------------------------------ one chunk
@dataclass
class _Chunk:
    batch: pa.RecordBatch  # SCHEMA columns
    fp: np.ndarray  # uint64 content fingerprint per row (conversation turns + image keys)
    groups: pa.Array | None


def _utf8_ok(arr: pa.Array) -> bool:
    try:
        arr.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _row_ids(col: pa.Array | None, shard: str, start: int, n: int) -> tuple[pa.Array, np.ndarray, list | None]:
    """(id text per row, id kind per row, reason per row or None). Rows without an id get `SHARD#ROW`."""
    auto = pc.binary_join_element_wise(scalar(f"{shard}#"),
                                       pc.cast(to_arrow(np.arange(start, start + n, dtype=np.int64)), pa.string()),
                                       scalar(""))
    kinds = np.zeros(n, np.int8)
    if col is None:
        return auto, kinds, None
    reasons = None
    if pa.types.is_floating(col.type):
        values = col.to_pylist()
        texts, reasons = [], [None] * n
        for i, v in enumerate(values):
            if v is None:
                texts.append(None)
            elif v == v and v not in (float("inf"), float("-inf")) and float(v).is_integer():
                texts.append(str(int(v)))
            else:
                texts.append(None)
                reasons[i] = f"id must be a string or an integer, got {shown(v)}"
        ids = strings(texts)
        kinds[:] = ID_KINDS["json"]
    elif pa.types.is_integer(col.type):
        ids = pc.cast(col, pa.string())
        kinds[:] = ID_KINDS["json"]
    else:
        ids = pc.cast(col, pa.string())
        if not _utf8_ok(ids):
            texts, reasons = [], [None] * n
            for i in range(n):
                cell = ids.slice(i, 1)
                if _utf8_ok(cell):
                    texts.append(cell.to_pylist()[0])
                else:
                    texts.append(None)
                    reasons[i] = "id is not valid UTF-8"
            ids = strings(texts)
    if ids.null_count:
        missing = pc.is_null(ids)
        kinds = np.where(to_numpy(missing), np.int8(ID_KINDS["string"]), kinds).astype(np.int8)
        ids = pc.if_else(missing, auto, ids)
    return ids, kinds, reasons


def _image_cells(col: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(row, list position or -1, cell) for every image cell of a column (null top-level cells: none)."""
    n = len(col)
    if _list_like(col.type):
        offsets = to_numpy(col.offsets).astype(np.int64)
        valid = to_numpy(pc.is_valid(col))
        lengths = np.where(valid, np.diff(offsets), 0)
        values = col.values.slice(offsets[0], offsets[-1] - offsets[0])
        keep = np.repeat(valid, np.diff(offsets))
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        index = np.arange(len(values), dtype=np.int64) - (offsets[:-1] - offsets[0])[np.repeat(np.arange(n), np.diff(offsets))]
        if not keep.all():
            values = values.filter(to_arrow(keep))
            index = index[keep]
        return rows, index, values
    valid = to_numpy(pc.is_valid(col))
    rows = np.flatnonzero(valid)
    return rows, np.full(len(rows), -1, np.int64), col.filter(to_arrow(valid)) if not valid.all() else col


def _image_names(batch: pa.RecordBatch, layout: TableLayout, kind: str, file: str, ci: int
                 ) -> tuple[list[list[str]], list[str | None], list[str]] | None:
    """Per row: image names (embedded references or paths), a reason or None, and the images' content key
    (bytes digests and paths, for the duplicate check); None for a table without image columns."""
    from selector.core.dedup import string_buffers

    if not layout.image_columns:
        return None
    n = batch.num_rows
    names: list[list[str]] = [[] for _ in range(n)]
    keys: list[list[str]] = [[] for _ in range(n)]
    reasons: list[str | None] = [None] * n
    ref_kind = "pq" if kind == "parquet" else "arrow"
    for col_name in layout.image_columns:
        rows, index, cells = _image_cells(batch.column(col_name))
        t = cells.type
        data = path = None
        if pa.types.is_struct(t):
            fields = {f.name for f in t}
            data = cells.field("bytes") if "bytes" in fields else None
            path = cells.field("path") if "path" in fields else None
            struct_valid = to_numpy(pc.is_valid(cells))
        elif _string_like(t):
            path, struct_valid = cells, np.ones(len(cells), bool)
        else:
            data, struct_valid = cells, to_numpy(pc.is_valid(cells))
        has_data = to_numpy(pc.is_valid(data)) & struct_valid if data is not None else np.zeros(len(cells), bool)
        if data is not None and has_data.any():
            offsets, buf = string_buffers(data)
            offsets = offsets.astype(np.int64)
        if path is not None and not _utf8_ok(path):
            path = None  # judged per cell below
            path_list = [None] * len(cells)
            bad_path = [True] * len(cells)
        else:
            path_list = path.to_pylist() if path is not None else [None] * len(cells)
            bad_path = [False] * len(cells)
        for k, (r, i) in enumerate(zip(rows.tolist(), index.tolist())):
            if has_data[k]:
                digest = hashlib.blake2b(buf[offsets[k]:offsets[k + 1]], digest_size=16).hexdigest()
                names[r].append(cell_ref(ref_kind, file, ci, r, col_name, i))
                keys[r].append(digest)
            elif path_list[k] is not None and struct_valid[k]:
                names[r].append(path_list[k])
                keys[r].append(path_list[k])
            elif reasons[r] is None:
                reasons[r] = (f"image path in column {col_name} is not valid UTF-8" if bad_path[k] else
                              f"image cell in column {col_name} holds neither bytes nor a path")
    return names, reasons, [_SEP_TURN.join(k) for k in keys]


def _turns_fast(col: pa.Array, layout: TableLayout) -> tuple[pa.Array, bool] | None:
    """The conversation column as a list of {from, value} (or, `full`, {from, role, value, content}) structs of
    strings, or None when the chunk needs the per-row parser (JSON text, odd types, invalid UTF-8)."""
    if not _list_like(col.type) or not _utf8_ok(col):
        return None
    offsets = col.offsets
    values = col.values
    t = values.type
    names = {f.name for f in t}
    mask = pc.is_null(values) if values.null_count else None
    if layout.kind == "texts":
        user, answer = values.field("user"), values.field("assistant")
        if not (_string_like(user.type) and _string_like(answer.type)) or values.null_count:
            return None
        m = len(values)
        inter = np.empty(2 * m, np.int64)
        inter[0::2], inter[1::2] = np.arange(m), np.arange(m) + m
        value = pc.take(pa.concat_arrays([user.cast(pa.string()), answer.cast(pa.string())]), to_arrow(inter))
        role = pc.take(pa.concat_arrays([pa.repeat(scalar("human"), m), pa.repeat(scalar("gpt"), m)]),
                       to_arrow(inter))
        turns = pa.StructArray.from_arrays([role, value], names=["from", "value"])
        offs = to_arrow((to_numpy(offsets).astype(np.int64) * 2).astype(np.int32))  # turn 2k, 2k+1 = text k
        return pa.ListArray.from_arrays(offs, turns, mask=pc.is_null(col) if col.null_count else None), False
    full = not {"from", "value"} <= names
    if full and not ({"from", "role"} & names and {"value", "content"} & names):
        return None
    wanted = _TURN_FIELDS if full else ("from", "value")
    children = []
    for f in wanted:
        if f in names:
            child = values.field(f)
            if not _string_like(child.type):
                return None
            children.append(child.cast(pa.string()))
        else:
            children.append(pa.nulls(len(values), pa.string()))
    turns = pa.StructArray.from_arrays(children, names=list(wanted), mask=mask)
    return pa.ListArray.from_arrays(offsets if offsets.type == pa.int32() else offsets.cast(pa.int32()), turns,
                                    mask=pc.is_null(col) if col.null_count else None), full


def row_conversation(value: Any, kind: str) -> list | str:
    """One row's turns as LLaVA `conversations` (a list of {from, value}), or a reason."""
    if kind == "texts":
        if not isinstance(value, list):
            return "no conversation"
        conv = []
        for k, text in enumerate(value, 1):
            if not isinstance(text, dict):
                return f"text {k} is not an object"
            conv.append({"from": "human", "value": text.get("user") or ""})
            conv.append({"from": "gpt", "value": text.get("assistant")})
        return conv
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return f"conversations is not valid JSON: {exc}"
    return value if value is not None else "no conversation"


def _slow_rows(batch: pa.RecordBatch, layout: TableLayout, first_line: int, ids: pa.Array, kinds: np.ndarray,
               id_reasons: list | None, names: list[list[str]] | None) -> pa.RecordBatch:
    """The per-row parser for a chunk the vectorised path cannot take: every verdict is `parse_conversations`'."""
    cols = Columns()
    col = batch.column(layout.text_column)
    id_list = ids.to_pylist()
    for i in range(batch.num_rows):
        rid, kind = id_list[i], int(kinds[i])
        cell = col.slice(i, 1)
        if id_reasons and id_reasons[i]:
            parsed, conv = Parsed(rid, "", "", [], id_reasons[i], kind), None
        elif not _utf8_ok(cell):
            parsed, conv = Parsed(rid, "", "", [], f"column {layout.text_column} is not valid UTF-8", kind), None
        else:
            conv = row_conversation(cell.to_pylist()[0], layout.kind)
            if isinstance(conv, str):
                parsed = Parsed(rid, "", "", [], conv, kind)
            else:
                p = parse_conversations({"conversations": conv, "images": names[i] if names else []}, rid)
                parsed = Parsed(rid, p.instruction, p.answer, p.images, p.reason, kind)
        cols.add(first_line + i, parsed)
    return one_batch(cols.table())


def _group_values(batch: pa.RecordBatch, layout: TableLayout) -> pa.Array | None:
    if layout.group_column is None:
        return None
    if layout.group_column == "texts.source":
        texts = batch.column(layout.text_column)
        offsets = to_numpy(texts.offsets).astype(np.int64)
        has = (np.diff(offsets) > 0) & to_numpy(pc.is_valid(texts))
        values = texts.values.field("source")
        first = values.take(to_arrow(np.minimum(offsets[:-1], max(len(values) - 1, 0)))) if len(values) else \
            pa.nulls(len(texts), values.type)
        col = pc.if_else(to_arrow(has), first, pa.nulls(len(texts), values.type))
    else:
        col = batch.column(layout.group_column)
    if _string_like(col.type) and _utf8_ok(col):
        return col.cast(pa.string())
    return strings([group_text(v) for v in col.to_pylist()]) if _utf8_ok(col) else \
        strings([None] * len(col))


def read_chunk(tables: Tables, layout: TableLayout, fi: int, ci: int, start: int, first_line: int) -> _Chunk:
    """One chunk's records (SCHEMA columns), their content fingerprints and group values."""
    source = tables.source
    batch = tables.read_plain(fi, ci, layout.read_columns())
    n = batch.num_rows
    file = str(Path(source.files[fi]).resolve())
    ids, kinds, id_reasons = _row_ids(batch.column(layout.id_column) if layout.id_column else None,
                                      source.shard_name(fi), start, n)
    images = _image_names(batch, layout, tables.kind, file, ci)
    names = images[0] if images else None
    fast = None if id_reasons else _turns_fast(batch.column(layout.text_column), layout)
    out = None
    if fast is not None:
        turns, full = fast
        view = pa.RecordBatch.from_arrays([ids, pa.nulls(n, pa.string()), turns], names=["id", "image", "conversations"])
        zeros = np.zeros(n, np.int64)
        res = conversation_rows(view, full, first_line, zeros, zeros, SCHEMA)
        if res is not None:
            out = res[0].set_column(SCHEMA.get_field_index("id_kind"), "id_kind", to_arrow(kinds))
    if out is None:
        out = _slow_rows(batch, layout, first_line, ids, kinds, id_reasons, names)
    for col in ("offset", "length"):
        out = out.set_column(SCHEMA.get_field_index(col), col, pa.nulls(n, pa.int64()))
    # Duplicate-content prefilter, as for JSONL: fingerprints of the instruction and answer, and of the images'
    # bytes digests; rows that share one are compared on their whole content (`_row_content`).
    fp = row_key([out.column("instruction"), out.column("answer")])
    if images is not None:
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum([len(x) for x in names], out=offsets[1:])
        out = out.set_column(SCHEMA.get_field_index("images"), "images",
                             pa.ListArray.from_arrays(to_arrow(offsets), strings([x for xs in names for x in xs])))
        if any(images[1]):
            reasons = [r if r is not None else ir for r, ir in zip(out.column("reason").to_pylist(), images[1])]
            out = out.set_column(SCHEMA.get_field_index("reason"), "reason", strings(reasons))
        fp = fp * np.uint64(0x9E3779B97F4A7C15) + fingerprint(strings(images[2]))
    return _Chunk(out, fp, _group_values(batch, layout))


def _location(tables: Tables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(file, chunk, row in chunk) of every input row, in reading order."""
    fis, cis, ris = [], [], []
    for fi, sizes in enumerate(tables.chunk_rows):
        for ci, n in enumerate(sizes):
            fis.append(np.full(n, fi, np.int32))
            cis.append(np.full(n, ci, np.int32))
            ris.append(np.arange(n, dtype=np.int32))
    cat = (lambda xs: np.concatenate(xs) if xs else np.empty(0, np.int32))
    return cat(fis), cat(cis), cat(ris)


def _row_content(tables: Tables, layout: TableLayout, loc, rows: np.ndarray) -> dict[int, bytes]:
    """The exact content (all turns, image bytes digests or paths) of the given rows, re-read chunk by chunk."""
    fi, ci, ri = loc
    out: dict[int, bytes] = {}
    order = np.lexsort((ri[rows], ci[rows], fi[rows]))
    rows = rows[order]
    keys = list(zip(fi[rows].tolist(), ci[rows].tolist()))
    cols = [layout.text_column, *layout.image_columns]
    k = 0
    while k < len(rows):
        f, c = keys[k]
        j = k
        while j < len(rows) and keys[j] == (f, c):
            j += 1
        batch = tables.read_plain(f, c, cols)
        images = _image_names(batch, layout, tables.kind, "", c)
        for row in rows[k:j].tolist():
            r = int(ri[row])
            cell = batch.column(layout.text_column).slice(r, 1)
            value = cell.to_pylist()[0] if _utf8_ok(cell) else None
            conv = row_conversation(value, layout.kind)
            out[row] = orjson.dumps([conv if not isinstance(conv, str) else None, images[2][r] if images else ""])
        k = j
    return out


def _mark_duplicate_content(table: pa.Table, fp: np.ndarray, tables: Tables, layout: TableLayout, loc) -> pa.Table:
    """Reject later rows whose whole conversation and images repeat an earlier valid row's exactly (prefiltered on
    a 64-bit fingerprint, then compared on content re-read from the input)."""
    valid = valid_positions(table)
    if len(valid) < 2:
        return table
    vfp = fp[valid]
    ordered = np.sort(vfp)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated) == 0:
        return table
    candidates = valid[np.isin(vfp, repeated)]
    return mark_repeats(table, candidates, _row_content(tables, layout, loc, candidates))


def read_table_records(source: Source, *, images=None, strict: bool = False, check_image_files: bool = True,
                       dedup: bool = True, workers: int = 1, columns: dict[str, str] | None = None,
                       group_by: str | None = None) -> RecordSet:
    """Read, parse and validate a Parquet / Arrow source (see the module docstring) into a `RecordSet`."""
    tables = Tables(source)
    layout = detect_layout(tables.schema, columns or {}, group_by, str(source.files[0]))
    # Two chunks in flight: Arrow's readers and kernels release the GIL, so both cores work; results keep the order.
    with ThreadPoolExecutor(max_workers=2) as pool:
        chunks = list(pool.map(lambda a: read_chunk(tables, layout, *a), chunk_starts(tables)))
    return table_records(source, tables, layout, chunks, images=images, strict=strict,
                         check_image_files=check_image_files, dedup=dedup, workers=workers)


def chunk_starts(tables: Tables) -> list[tuple[int, int, int, int]]:
    """(file, chunk, first row of the chunk in its file, line number of that row in the input) for every chunk."""
    starts, line = [], 1
    for fi, ci, start in tables.chunks():
        starts.append((fi, ci, start, line))
        line += tables.chunk_rows[fi][ci]
    return starts


def table_records(source: Source, tables: Tables, layout: TableLayout, chunks: list[_Chunk], *, images=None,
                  strict: bool = False, check_image_files: bool = True, dedup: bool = True, workers: int = 1
                  ) -> RecordSet:
    """The source's `RecordSet` from its chunks (`read_chunk`, in order): the checks over the whole input
    (duplicate ids, duplicate content re-read from the files, images), which use no chunk's text."""
    table = pa.Table.from_batches([c.batch for c in chunks], schema=SCHEMA)
    fp = np.concatenate([c.fp for c in chunks]) if chunks else np.empty(0, np.uint64)
    groups = None
    if layout.group_column:
        groups = pa.concat_arrays([c.groups for c in chunks]) if chunks else pa.array([], pa.string())
    del chunks
    table = mark_duplicate_ids(table)
    loc = _location(tables)
    if dedup:
        table = _mark_duplicate_content(table, fp, tables, layout, loc)
    table, root, path, stats = finish_source_records(table, source, images, check_image_files, workers, strict)
    return RecordSet(path=path, layout=Layout(source.kind, layout.kind), images_root=root, table=table,
                     meta={"source_stat": stats, "loc": loc, "table_layout": layout, "tables": tables},
                     source=source, groups=groups)


# ------------------------------------------------------------------------------------------------ writing back
def _check_unchanged(records: RecordSet) -> None:
    now = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in records.files)
    if now != records.meta["source_stat"]:
        raise FormatError(f"{records.path} changed since it was read; re-run the selection")


def _codec(tables: Tables) -> str:
    """The input's compression codec (Parquet), so the output is stored alike; Arrow input: pyarrow's default."""
    if tables.kind != "parquet" or not tables.chunk_rows[0]:
        return "snappy"
    meta = tables.handles[0].metadata
    codec = meta.row_group(0).column(0).compression.lower() if meta.num_columns else "snappy"
    return {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)


def _list_item_names(t: pa.DataType) -> set[str]:
    """The child field names of every list type nested in `t` ('item' for Arrow's default, 'element' for
    Parquet's compliant one)."""
    names: set[str] = set()
    if _list_like(t):
        names.add(t.value_field.name)
        names |= _list_item_names(t.value_type)
    elif pa.types.is_struct(t):
        for f in t:
            names |= _list_item_names(f.type)
    return names


def row_group_size(tables: Tables) -> int:
    """The input's rows per chunk (its first row group / record batch), the output's row-group size."""
    for sizes in tables.chunk_rows:
        if sizes:
            return max(1, sizes[0])
    return 1 << 20


def iter_rows(records: RecordSet, rows: np.ndarray, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The input rows at positions `rows` (ascending) with all (or `columns`) columns, one chunk's worth at a time,
    values untouched."""
    tables: Tables = records.meta["tables"]
    fi, ci, ri = records.meta["loc"]
    k = 0
    rows = np.asarray(rows, np.int64)
    while k < len(rows):
        f, c = int(fi[rows[k]]), int(ci[rows[k]])
        j = k
        while j < len(rows) and fi[rows[j]] == f and ci[rows[j]] == c:
            j += 1
        batch = tables.read(f, c, columns)
        yield batch.take(to_arrow(ri[rows[k:j]].astype(np.int64)))
        k = j


def write_table_records(records: RecordSet, rows: np.ndarray, out: Path) -> Path:
    """The rows at `rows` as one Parquet file with the input's schema (and its metadata: HF features survive),
    row-group size and codec; every value, embedded image bytes included, is copied unchanged."""
    import pyarrow.parquet as pq

    _check_unchanged(records)
    tables: Tables = records.meta["tables"]
    schema = tables.schema_of(0)
    size = row_group_size(tables)
    with atomic_path(out, suffix=".parquet") as tmp:
        # Lists keep the input's child name ('item' from Arrow / datasets, 'element' from compliant Parquet), so the
        # output's schema equals the input's.
        compliant = "item" not in set().union(*(_list_item_names(f.type) for f in schema))
        with pq.ParquetWriter(tmp, schema, compression=_codec(tables), use_compliant_nested_type=compliant) as writer:
            pending: list[pa.RecordBatch] = []
            held = 0
            for batch in iter_rows(records, rows):
                pending.append(batch)
                held += batch.num_rows
                while held >= size:
                    table = pa.Table.from_batches(pending, schema=schema)
                    writer.write_table(table.slice(0, size), row_group_size=size)
                    rest = table.slice(size)
                    pending, held = rest.to_batches(), rest.num_rows
            if held or not len(rows):
                writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=size)
    return out
