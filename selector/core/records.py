"""Read instruction files into a `datasets.Dataset` of records, validate them, and write kept records back.

Every input record ends up in the dataset: valid ones with `reason = None`, rejected ones with their reason.
The original JSON text of each record is kept in `raw`, so output files reproduce the input's JSON values exactly.
"""
from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.arrow_numpy import scalar, strings, to_arrow, to_numpy
from selector.core.compressed import compress, compression_for_output, open_plain
from selector.core.dedup import fingerprint, note_distinct, repeats, row_key
from selector.core.errors import FormatError, MmselectError, RecordError
from selector.core.formats import (BOM, ID_KINDS, Layout, Parsed, content_key, default_images_root,
                                   detect_layout, json_text, parse_record, resolve_input)
from selector.core.images import check_images
from selector.core.io import OutputError, atomic_write, check_outputs, file_key
from selector.core.registry import Registry
from selector.core.sources import Source, resolve_source

SCHEMA = pa.schema([
    ("line", pa.int64()),
    ("id", pa.string()),
    ("instruction", pa.string()),
    ("answer", pa.string()),
    ("images", pa.list_(pa.string())),
    ("offset", pa.int64()),
    ("length", pa.int64()),
    ("raw", pa.string()),
    ("reason", pa.string()),
    ("id_kind", pa.int8()),  # formats.ID_KINDS: 0 a string id, 1 a number (its JSON text), 2 automatic (line-N)
])
# JSONL records are referenced by byte range (offset, length) in the source file and re-read on write, so a large
# file is never held in memory as text; records from JSON containers keep their serialised text in `raw`.
PARALLEL_MIN_BYTES = 32 << 20  # below this a second process costs more than it saves
RANGE_BYTES = 16 << 20  # one parse task; bounds the memory it holds; small enough that two overlap well


@dataclass
class RecordSet:
    """All records of one input file, one row per record, rejected ones included (with their `reason`).

    The rows live in an Arrow table; `dataset` is the same table as a `datasets.Dataset` (zero-copy, built on first
    use, so a run that never needs the `datasets` API does not pay its ~1 s import)."""

    path: Path
    layout: Layout
    images_root: Path | None
    table: pa.Table  # SCHEMA's columns
    container: dict | None = None  # cc_sbu: the top-level object without its annotations
    meta: dict = field(default_factory=dict)
    source: Source | None = None  # what the input spec named (kind, files in reading order)
    data_path: Path | None = None  # where JSON records' bytes are read from (a decompressed copy), else `path`
    groups: pa.Array | None = None  # with `group_by`: each record's value of that field as text (null: none)

    @property
    def files(self) -> tuple[Path, ...]:
        """The input's files (an output must never replace one; a score table fingerprints them)."""
        return self.source.files if self.source is not None else (self.path,)

    @property
    def native_suffix(self) -> str:
        """A file suffix for this input's own format (what `write_records` writes by default)."""
        kind = self.layout.container
        return {"parquet": ".parquet", "arrow": ".parquet", "webdataset": ".tar", "jsonl": ".jsonl"}.get(kind, ".json")

    @property
    def byte_path(self) -> Path:
        """The file whose byte ranges (`offset`, `length`) JSONL records refer to."""
        return self.data_path or self.path

    @cached_property
    def dataset(self):
        """All records as a datasets.Dataset with SCHEMA's columns."""
        import datasets

        return datasets.Dataset(datasets.table.InMemoryTable(self.table), fingerprint=self.fingerprint)

    def valid_mask(self) -> np.ndarray:
        return to_numpy(pc.is_null(self.table.column("reason")))

    def valid_rows(self) -> np.ndarray:
        """Row positions of the records that passed validation, ascending."""
        return valid_positions(self.table)

    def valid_table(self) -> pa.Table:
        """The records that passed validation, as an Arrow table without `raw` (row order of the file)."""
        table = self.table.drop_columns(["raw"])
        if table.column("reason").null_count != table.num_rows:
            table = table.filter(pc.is_null(table.column("reason")))
        return table

    def valid(self):
        """The records that passed validation, as a datasets.Dataset (row order of the file)."""
        import datasets

        return datasets.Dataset(datasets.table.InMemoryTable(self.valid_table()), fingerprint=self.fingerprint + "-valid")

    @property
    def fingerprint(self) -> str:
        """Identifies this read (file, its size and mtime, format); passed to datasets so it need not hash the table."""
        import hashlib

        key = f"{self.path.resolve()}|{self.meta.get('source_stat')}|{self.layout}|{self.images_root}|{len(self)}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def rejected(self, fragments: bool = False) -> list[dict]:
        """One `{"line", "id", "reason"}` per rejected record. A number id is the number (an int for an integer,
        any size; with `fragments`, its exact JSON text as an `orjson.Fragment`), a string id the string."""
        t = self.table.filter(pc.invert(pc.is_null(self.table.column("reason"))))
        return [{"line": l, "id": id_value(i, k, fragments), "reason": r} for l, i, k, r in
                zip(t.column("line").to_pylist(), t.column("id").to_pylist(), t.column("id_kind").to_pylist(),
                    t.column("reason").to_pylist())]

    def source_bytes(self, rows: np.ndarray) -> list[bytes]:
        """The source text of the records at row positions `rows` (re-read from the file for JSONL); JSON inputs only
        (Parquet and tar records keep no JSON text)."""
        return record_bytes(self.byte_path, self.table)(rows)

    def __len__(self) -> int:
        return self.table.num_rows


class Columns:
    """Accumulates parsed records as row tuples and flushes them to Arrow batches (transposed in C by zip)."""

    def __init__(self, batch_rows: int = 65536):
        self.batch_rows = batch_rows
        self.batches: list[pa.RecordBatch] = []
        self.rows: list[tuple] = []

    def add(self, line: int, parsed: Parsed, offset: int | None = None, length: int | None = None,
            raw: str | None = None):
        self.rows.append((line, parsed.id, parsed.instruction, parsed.answer, parsed.images, offset, length, raw,
                          parsed.reason, parsed.id_kind))
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self):
        if self.rows:
            cols = [_column(col, f.type) for col, f in zip(zip(*self.rows), SCHEMA)]
            self.batches.append(pa.RecordBatch.from_arrays(cols, schema=SCHEMA))
            self.rows = []

    def table(self) -> pa.Table:
        self.flush()
        return pa.Table.from_batches(self.batches, schema=SCHEMA)


def _column(values: tuple, arrow_type: pa.DataType) -> pa.Array:
    """One SCHEMA column from Python values (str / int / list of str, None = null)."""
    n = len(values)
    if arrow_type == pa.string():
        return strings(values)
    if arrow_type == pa.int8():
        return to_arrow(np.fromiter(values, dtype=np.int8, count=n))
    if arrow_type == pa.int64():
        missing = np.fromiter((v is None for v in values), dtype=bool, count=n)
        return to_arrow(np.fromiter((0 if v is None else v for v in values), dtype=np.int64, count=n), mask=missing)
    offsets = np.zeros(n + 1, np.int32)  # list<string>: every record has a (possibly empty) list
    np.cumsum(np.fromiter(map(len, values), dtype=np.int32, count=n), out=offsets[1:])
    return pa.ListArray.from_arrays(to_arrow(offsets), strings([v for vs in values for v in vs]))


def _parse_jsonl_range(path: str, start: int, end: int, schema: str, strict: bool) -> tuple[pa.Table, int]:
    """Parse the lines in the byte range [start, end) (line-aligned); line numbers are relative to `start`."""
    cols = Columns()
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    n_lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    pos = start
    for line_no, line in enumerate(data.split(b"\n")[:n_lines], 1):
        offset = pos
        pos += len(line) + 1
        if not line.strip():  # a blank line is no record, on every parse path
            continue
        parsed = parse_record(line, line_no, schema)
        if strict and parsed.reason:
            raise RecordError(parsed.reason, path=path, line=line_no, record_id=parsed.id)
        cols.add(line_no, parsed, offset, len(line.rstrip(b"\r")))
    return cols.table(), n_lines


def _reparse_lines(data: bytes, base: int, schema: str):
    """The per-record parser for the lines of a fast-path block that the Arrow reader cannot decide exactly."""
    def reparse(line_numbers: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.Table:
        cols = Columns()
        for line_no, start, length in zip(line_numbers.tolist(), starts.tolist(), lengths.tolist()):
            cols.add(line_no, parse_record(data[start - base:start - base + length], line_no, schema), start, length)
        return cols.table()
    return reparse


def text_start(path: Path) -> int:
    """Where a text file's first line starts: after a UTF-8 byte-order mark (Windows editors write one), so the
    mark is never part of the first record's bytes (nor copied into the middle of an output)."""
    with open(path, "rb") as f:
        return len(BOM) if f.read(len(BOM)) == BOM else 0


def _line_aligned_splits(path: Path, parts: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    cuts = [text_start(path)]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(max(size * k // parts, cuts[-1]))
            f.readline()  # move to the start of the next line
            cuts.append(min(f.tell(), size))
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a] or [(0, 0)]


def line_ranges(path: Path, lines: int, block: int = 1 << 24) -> list[tuple[int, int]]:
    """Byte ranges of `lines` lines each (the last one shorter), in file order: input shards that stay where they
    are when a record elsewhere changes length."""
    cuts, since, pos = [text_start(path)], 0, 0  # since: newlines after the last cut
    with open(path, "rb") as f:
        while data := f.read(block):
            newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
            cuts.extend((pos + newlines[lines - since - 1::lines] + 1).tolist())
            since = (since + len(newlines)) % lines
            pos += len(data)
    if cuts[-1] != pos:
        cuts.append(pos)
    return list(zip(cuts, cuts[1:])) or [(0, 0)]


CONTENT_COLUMNS = ("instruction", "answer", "images")  # the duplicate-content prefilter (then exact, see below)
_AMBIGUOUS_STRING_ID = r'^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|line-[0-9]+|true|false|null|["\[{].*)$'


def dedup_keys(table: pa.Table) -> dict[str, np.ndarray]:
    """The per-row fingerprints the duplicate checks prefilter on: of the id, and of the content."""
    return {"id": fingerprint(table.column("id")), "content": row_key([table.column(c) for c in CONTENT_COLUMNS])}


def finalise_ids(table: pa.Table) -> pa.Table:
    """Give records without an id their automatic id `line-N` (N: the line in the whole file, so ids never restart
    between parse ranges), and keep every id key distinct from every other kind: when a string id has the same
    text as a number id or an automatic id in this file (`"1"` and `1`, `"line-3"` and line 3's automatic id),
    string ids that could be mistaken for another kind are keyed by their JSON text (`"1"` with its quotes)."""
    kind = to_numpy(table.column("id_kind"))
    ids = table.column("id")
    auto = kind == ID_KINDS["auto"]
    if auto.any():
        numbered = pc.binary_join_element_wise(scalar("line-"), pc.cast(table.column("line"), pa.string()), scalar(""))
        ids = pc.if_else(to_arrow(auto), numbered, ids)
    string = kind == ID_KINDS["string"]
    if not string.all():
        others = pc.filter(ids, to_arrow(~string))
        clash = string & to_numpy(pc.is_in(ids, value_set=others.combine_chunks() if isinstance(others, pa.ChunkedArray)
                                           else others), null=False)
        if clash.any():
            ambiguous = string & to_numpy(pc.match_substring_regex(ids, _AMBIGUOUS_STRING_ID), null=False)
            rows = np.flatnonzero(ambiguous)
            values = ids.take(to_arrow(rows)).to_pylist()
            mask = np.zeros(len(kind), bool)
            mask[rows] = True
            ids = pc.replace_with_mask(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids,
                                       to_arrow(mask), strings([json_text(v) for v in values]))
    if auto.any() or not string.all():
        table = table.set_column(SCHEMA.get_field_index("id"), "id", ids)
    return table


def id_value(key: str | None, kind: int, fragment: bool = False):
    """A record's id for JSON output: a string id as a string, a number as the number (its exact JSON text as an
    `orjson.Fragment` with `fragment`, else an int where it is an integer, else its text)."""
    if key is None or kind != ID_KINDS["json"]:
        return key
    if fragment:
        return orjson.Fragment(key.encode())
    return int(key) if re.fullmatch(r"-?[0-9]+", key) else key


def _fast_range(path: Path, start: int, end: int, schema: str) -> tuple[pa.Table, int, np.ndarray] | None:
    from selector.core.fastjsonl import parse_block

    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    table = parse_block(data, start, SCHEMA, reparse=_reparse_lines(data, start, schema))
    # The content key is computed here, in the parse threads, while the range's columns are fresh in memory.
    return None if table is None else (table, table.num_rows, dedup_keys(table)["content"])


def _read_jsonl(path: Path, schema: str, strict: bool, workers: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The records of a JSONL file and their `dedup_keys`.

    Conversation files go through the vectorised Arrow parser range by range; ranges it cannot type, other
    schemas, and strict mode (which must stop at the first bad line) use the per-record parser in worker processes."""
    size = path.stat().st_size
    parallel = size >= PARALLEL_MIN_BYTES and workers > 1
    parts = max(workers, -(-size // RANGE_BYTES)) if parallel else max(1, -(-size // RANGE_BYTES))
    ranges = _line_aligned_splits(path, parts)
    results: list[tuple | None] = [None] * len(ranges)
    if schema in ("llava", "sharegpt") and not strict:
        # Two ranges in flight: one range's single-threaded validation overlaps the next one's multithreaded
        # parse (both release the GIL in Arrow's C++ kernels), so neither core idles.
        with ThreadPoolExecutor(max_workers=2 if parallel else 1) as threads:
            results = list(threads.map(lambda r: _fast_range(path, *r, schema), ranges))
    todo = [i for i, r in enumerate(results) if r is None]
    pool = None
    if parallel and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor  # only for ranges the Arrow parser could not type

        pool = ProcessPoolExecutor(max_workers=workers)
    try:
        futures = {i: pool.submit(_parse_jsonl_range, str(path), *ranges[i], schema, strict) for i in todo} if pool else {}
        offset = 0
        for i in range(len(ranges)):  # in file order, so a strict-mode error names the first bad line
            if results[i] is None:
                try:
                    results[i] = futures[i].result() if pool else _parse_jsonl_range(str(path), *ranges[i], schema,
                                                                                      strict)
                except RecordError as exc:
                    raise RecordError(exc.reason, path=str(path), line=exc.line + offset,
                                      record_id=exc.record_id) from None
            offset += results[i][1]
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return join_jsonl_parts(results)


def parse_jsonl_part(path: Path, start: int, end: int, schema: str) -> tuple[pa.Table, int, np.ndarray]:
    """One line-aligned byte range [start, end) of a JSONL file, not strict: (its records, with line numbers
    counted from the range's first line; its line count; their content keys). What `_read_jsonl` does per range,
    as one call: a cluster engine runs it as one task per input shard."""
    part = _fast_range(path, start, end, schema) if schema in ("llava", "sharegpt") else None
    if part is None:
        table, n_lines = _parse_jsonl_range(str(path), start, end, schema, False)
        part = (table, n_lines, dedup_keys(table)["content"])
    return part


def join_jsonl_parts(parts: list[tuple]) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The parsed ranges of one JSONL file, in file order ((table, lines, [content keys])), as one table with line
    numbers of the whole file and final ids, and its `dedup_keys`."""
    tables, content, offset = [], [], 0
    for table, n_lines, *known in parts:
        if offset:
            table = table.set_column(0, "line", pc.add(table.column("line"), scalar(offset)))
        tables.append(table)
        content.append(known[0] if known else dedup_keys(table)["content"])
        offset += n_lines
    table = finalise_ids(pa.concat_tables(tables))
    return table, {"id": fingerprint(table.column("id")), "content": np.concatenate(content)}


def mark_duplicates(table: pa.Table, keys: dict, data_path: Path, schema: str, content: bool = True) -> pa.Table:
    """Reject repeated ids and, with `content`, repeated content (see `mark_duplicate_ids`,
    `_mark_duplicate_content`); `keys`: the reader's `dedup_keys`, None where not known."""
    table = mark_duplicate_ids(table, keys["id"])
    if content:
        table = _mark_duplicate_content(table, keys["content"], record_bytes(data_path, table), schema)
    return table


_BLANK = re.compile(r"[ \t\n\r]*")


class _JsonText:
    """Walks a JSON container's text and yields each record's exact source text (so a record's JSON values,
    numbers included, are written back unchanged, and each record gets the same verdict as a JSONL line)."""

    def __init__(self, path: Path, name: Path | None = None):
        self.path = name or path  # `name`: what messages call the file (a decompressed copy's original)
        # Invalid UTF-8 inside one record should cost only that record: decoded leniently, judged per record.
        self.text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        if self.text.startswith("\ufeff"):  # a byte-order mark: blank, like the whitespace around the JSON
            self.text = " " + self.text[1:]
        self.decoder = json.JSONDecoder()

    def skip(self, i: int) -> int:
        return _BLANK.match(self.text, i).end()

    def fail(self, i: int, what: str):
        line = self.text.count("\n", 0, i) + 1
        col = i - (self.text.rfind("\n", 0, i) + 1) + 1
        raise FormatError(f"{self.path}:{line}:{col}: invalid JSON ({what}); a JSON-list file must parse as a "
                          "whole (use JSONL to isolate bad lines)")

    def value(self, i: int) -> tuple[Any, int]:
        try:
            return self.decoder.raw_decode(self.text, i)
        except json.JSONDecodeError as exc:
            self.fail(exc.pos, exc.msg)
        except RecursionError:
            self.fail(i, "nested too deeply")

    def items(self, i: int) -> tuple[list[str], int]:
        """The source text of each item of the array starting at `i`, and the position after it."""
        if self.text[i:i + 1] != "[":
            self.fail(i, "expected '['")
        out: list[str] = []
        i = self.skip(i + 1)
        if self.text[i:i + 1] == "]":
            return out, i + 1
        while True:
            _, end = self.value(i)
            out.append(self.text[i:end])
            i = self.skip(end)
            sep = self.text[i:i + 1]
            if sep == "]":
                return out, i + 1
            if sep != ",":
                self.fail(i, "expected ',' or ']'")
            i = self.skip(i + 1)

    def end(self, i: int) -> None:
        i = self.skip(i)
        if i != len(self.text):
            self.fail(i, "extra data after the top-level value")

    def list(self) -> list[str]:
        items, i = self.items(self.skip(0))
        self.end(i)
        return items

    def cc_sbu(self) -> tuple[dict, list[str]]:
        """The top-level object's other fields, and the source text of each annotation."""
        i = self.skip(0)
        if self.text[i:i + 1] != "{":
            raise FormatError(f"{self.path}: a cc_sbu_align file needs an 'annotations' list")
        container: dict = {}
        annotations = None
        i = self.skip(i + 1)
        while self.text[i:i + 1] != "}":
            key, i = self.value(i)
            i = self.skip(i)
            if not isinstance(key, str) or self.text[i:i + 1] != ":":
                self.fail(i, "expected a key and ':'")
            i = self.skip(i + 1)
            if key in container or (key == "annotations" and annotations is not None):
                self.fail(i, f"duplicate key {json_text(key)}")
            if key == "annotations" and self.text[i:i + 1] == "[":
                annotations, i = self.items(i)
            else:
                container[key], i = self.value(i)
            i = self.skip(i)
            if self.text[i:i + 1] == ",":
                i = self.skip(i + 1)
            elif self.text[i:i + 1] != "}":
                self.fail(i, "expected ',' or '}'")
        self.end(i + 1)
        if annotations is None:
            raise FormatError(f"{self.path}: a cc_sbu_align file needs an 'annotations' list")
        return container, annotations


def _read_json_items(path: Path, items: Iterable[str], schema: str, strict: bool) -> pa.Table:
    cols = Columns()
    for n, text in enumerate(items, 1):
        data = text.encode("utf-8", errors="surrogateescape")
        parsed = parse_record(data, n, schema)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = None  # not storable as text; the parser has rejected it (invalid UTF-8)
        if strict and parsed.reason:
            raise RecordError(parsed.reason, path=str(path), line=n, record_id=parsed.id)
        cols.add(n, parsed, raw=text)
    return cols.table()


def set_reasons(table: pa.Table, rows: np.ndarray, reasons: list[str]) -> pa.Table:
    if len(rows) == 0:
        return table
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[rows] = True
    order = np.argsort(rows, kind="stable")  # replace_with_mask fills the masked slots in row order
    column = pc.replace_with_mask(table.column("reason").combine_chunks(), to_arrow(mask),
                                  strings([reasons[k] for k in order]))
    return table.set_column(SCHEMA.get_field_index("reason"), "reason", column)


def valid_positions(table: pa.Table) -> np.ndarray:
    reason = table.column("reason")
    if reason.null_count == table.num_rows:
        return np.arange(table.num_rows, dtype=np.int64)
    return np.flatnonzero(to_numpy(pc.is_null(reason)))


def mark_duplicate_ids(table: pa.Table, key: np.ndarray | None = None) -> pa.Table:
    """Reject every later occurrence of an id; the first occurrence in the file keeps it."""
    valid = valid_positions(table)
    rows, first = repeats([table.column("id")], valid, key)
    if len(rows) == 0:
        if len(valid) == table.num_rows:
            note_distinct(table.column("id"))
        return table
    lines = to_numpy(table.column("line"))
    return set_reasons(table, rows, [f"duplicate id (first seen at line {lines[f]})" for f in first])


def mark_repeats(table: pa.Table, rows: np.ndarray, keys) -> pa.Table:
    """Reject each row of `rows` (ascending) whose exact content key (`keys[row]`) an earlier one of them had, as a
    duplicate of that first row's id (the readers of tables and shards compare re-read content this way)."""
    seen: dict[bytes, int] = {}
    later, earlier = [], []
    for row in np.asarray(rows, np.int64).tolist():
        key = keys[row]
        if key in seen:
            later.append(row)
            earlier.append(seen[key])
        else:
            seen[key] = row
    ids = table.column("id")
    return set_reasons(table, np.asarray(later, np.int64),
                       [f"duplicate content of id {json_text(ids[int(f)].as_py())}" for f in earlier])


def record_bytes(path: Path, table: pa.Table):
    """rows -> each row's source bytes (re-read from the file for JSONL, from `raw` for JSON containers)."""
    def read(rows: np.ndarray) -> list[bytes]:
        take = to_arrow(np.asarray(rows, dtype=np.int64))
        raws = table.column("raw").take(take)
        if raws.null_count < len(rows):
            return [(r or "").encode("utf-8") for r in raws.to_pylist()]
        offsets = to_numpy(table.column("offset").take(take))
        lengths = to_numpy(table.column("length").take(take))
        return list(_byte_ranges(path, offsets, lengths))
    return read


def _mark_duplicate_content(table: pa.Table, key: np.ndarray | None = None, read=None, schema: str = "llava"
                            ) -> pa.Table:
    """Reject later records whose content repeats an earlier valid record's exactly: the whole conversation (every
    turn, system prompts included) and its images. Prefiltered on (first instruction, answers, images); the few
    candidates are then compared on their full content (`formats.content_key`), re-read from the source."""
    rows, first = repeats([table.column(c) for c in CONTENT_COLUMNS], valid_positions(table), key)
    if len(rows) and read is not None:
        members = np.unique(np.concatenate([rows, first]))
        full = {}
        for row, data in zip(members.tolist(), read(members)):
            try:
                full[row] = content_key(orjson.loads(data), schema)
            except orjson.JSONDecodeError:
                full[row] = None
        seen: dict[bytes, int] = {}
        later, earlier = [], []
        for row in members.tolist():
            k = full[row]
            if k is None:
                continue
            if k in seen:
                later.append(row)
                earlier.append(seen[k])
            else:
                seen[k] = row
        rows, first = np.asarray(later, dtype=np.int64), np.asarray(earlier, dtype=np.int64)
    ids = table.column("id")
    return set_reasons(table, rows, [f"duplicate content of id {json_text(ids[int(f)].as_py())}" for f in first])


def check_record_images(table: pa.Table, root: Path, workers: int, embedded: bool = False) -> pa.Table:
    """Decode every image of the valid records (see `images.check_images`); a bad one rejects its record."""
    reason_col = table.column("reason")
    has_images = pc.and_(pc.is_null(reason_col), pc.greater(pc.list_value_length(table.column("images")), scalar(0)))
    idx = np.flatnonzero(to_numpy(has_images, null=False))
    if len(idx) == 0:
        return table
    names = table.column("images").take(to_arrow(idx)).to_pylist()
    problems = check_images(root, names, workers=workers, embedded=embedded)
    if not any(problems):
        return table
    reasons = reason_col.to_pylist()
    for i, p in zip(idx, problems):
        if p:
            reasons[i] = p
    return table.set_column(SCHEMA.get_field_index("reason"), "reason", strings(reasons))


READERS: Registry = Registry("input kind")  # Source.kind -> reader(source, **read_records options) -> RecordSet
READERS.add("parquet", "selector.core.parquet_records:read_table_records")
READERS.add("arrow", "selector.core.parquet_records:read_table_records")
READERS.add("webdataset", "selector.core.webdataset_records:read_webdataset_records")
WRITERS: Registry = Registry("output kind")  # Layout.container -> writer(records, rows, out) for non-JSON inputs
WRITERS.add("parquet", "selector.core.parquet_records:write_table_records")
WRITERS.add("arrow", "selector.core.parquet_records:write_table_records")
WRITERS.add("webdataset", "selector.core.webdataset_records:write_webdataset_records")
WRITERS.add("llava-json", "selector.core.export:write_llava_json")  # --out-format: any input as LLaVA
WRITERS.add("llava-jsonl", "selector.core.export:write_llava_jsonl")
OUT_FORMATS = ("same", "llava-json", "llava-jsonl")


def read_records(path: str | os.PathLike, *, images: str | os.PathLike | None = None, fmt: str | None = None,
                 strict: bool = False, check_image_files: bool = True, dedup: bool = True,
                 workers: int = 0, columns: dict[str, str] | None = None, group_by: str | None = None) -> RecordSet:
    """Read, parse and validate an instruction input (format auto-detected unless `fmt` is given).

    The input is a JSON / JSONL file (plain, `.gz` or `.zst`), a cc_sbu_align folder, Parquet shards (a file, a
    folder or a glob), a `save_to_disk` folder, `hf://datasets/...`, or WebDataset tar shards (a file, a folder or
    a brace pattern); see `selector.core.sources`. Bad records are kept with a rejection reason; with
    `strict=True` the first one raises `RecordError`. Images are resolved under `images` (default: the input's
    folder, or `image/` for cc_sbu_align) or read from the input itself, and fully decoded in `workers` processes
    (0 = one per CPU). With `dedup`, a record repeating an earlier one's images, instruction and answer exactly is
    rejected as a duplicate. `columns` maps the roles id / image / conversations / texts to a table's column names;
    `group_by` names the field whose value becomes each record's group (`RecordSet.groups`).
    """
    source = resolve_source(path)
    workers = workers or (os.cpu_count() or 1)
    if source.kind != "json" and fmt is not None:
        raise FormatError(f"--format {fmt} names a JSON schema; {source.spec} is {source.kind} (its columns or "
                          "members say what they hold; tables take --columns)")
    if source.kind != "json":
        return READERS.get(source.kind)(source, images=images, strict=strict, check_image_files=check_image_files,
                                        dedup=dedup, workers=workers, columns=columns or {}, group_by=group_by)
    if columns:
        raise FormatError("--columns maps the columns of Parquet / Arrow tables; a JSON input names its fields itself")
    path = resolve_input(Path(path))
    data_path, holder = open_plain(path)
    layout = detect_layout(data_path, fmt)
    st = data_path.stat()
    container = None
    keys = {"id": None, "content": None}  # None: the duplicate checks fingerprint the columns themselves
    if layout.container == "jsonl":
        table, keys = _read_jsonl(data_path, layout.schema, strict, workers)
    else:
        doc = _JsonText(data_path, path)
        if layout.container == "cc_sbu":
            container, items = doc.cc_sbu()
        else:
            items = doc.list()
        del doc
        table = finalise_ids(_read_json_items(path, items, layout.schema, strict))
    table = mark_duplicates(table, keys, data_path, layout.schema, dedup)
    root = Path(images) if images is not None else default_images_root(path, layout)
    if check_image_files:
        table = check_record_images(table, root, workers)
    if strict:
        raise_first_rejection(table, path)
    meta = {"source_stat": (st.st_size, st.st_mtime_ns)}
    if holder is not None:
        meta.update(decompressed=holder)
    records = RecordSet(path=path, layout=layout, images_root=root, table=table, container=container, meta=meta,
                        source=Source(str(path), "json", (path,), path.parent), data_path=data_path)
    if group_by:
        records.groups = _json_groups(records, group_by)
    return records


def check_record_outputs(records: RecordSet, outputs: Iterable[Path | None], flag: str = "--out") -> None:
    """`check_outputs` against everything a run read: the input's own files, and the image files its records name
    (images are inputs too: `--out img/0.png`, or a symlink or hard link to it under any name, must not replace a
    record's image). Only an output that exists and either lies in the images root (symlinks followed) or has
    another hard link can be an image; only then are the images stat'ed, once each."""
    from selector.core.embedded import is_ref

    outputs = [Path(o) for o in outputs if o is not None]
    check_outputs(records.files, outputs, flag)
    if records.images_root is None:
        return
    real_root = os.path.realpath(records.images_root)
    keys = {}
    for out in outputs:
        try:
            st = os.stat(out)
        except (OSError, ValueError):
            continue
        real = os.path.realpath(out)
        if st.st_nlink > 1 or real.startswith(real_root.rstrip(os.sep) + os.sep):
            keys[(st.st_dev, st.st_ino)] = out
    if not keys:
        return
    names = pc.unique(pc.list_flatten(records.table.column("images"))).to_pylist()
    for name in names:
        if not name or is_ref(name) or "\x00" in name:
            continue
        out = keys.get(file_key(os.path.join(real_root, name)))
        if out is not None:
            raise OutputError(f"{flag} {out} would overwrite {name}, an image of the input's records; choose "
                              "another output path")


def raise_first_rejection(table: pa.Table, path) -> None:
    """--strict: stop at the first rejected record, naming it."""
    bad = table.filter(pc.invert(pc.is_null(table.column("reason"))))
    if bad.num_rows:
        first = bad.slice(0, 1).to_pylist()[0]
        raise RecordError(first["reason"], path=str(path), line=first["line"], record_id=first["id"])


def finish_source_records(table: pa.Table, source, images, check_image_files: bool, workers: int, strict: bool
                          ) -> tuple[pa.Table, Path, Path, tuple]:
    """The last steps every table / shard reader shares: decode the embedded images under the pixel cap, stop at the
    first rejection with --strict, and stat the source files. Returns (table, images root, path named, stats)."""
    root = Path(images) if images is not None else source.root
    if check_image_files:
        table = check_record_images(table, root, workers, embedded=True)
    path = Path(source.files[0] if len(source.files) == 1 else source.root)
    if strict:
        raise_first_rejection(table, path)
    stats = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in source.files)
    return table, root, path, stats


def group_text(value: Any) -> str | None:
    """A field's value as a group label: a string as itself, anything else as its JSON text; None stays None."""
    if value is None:
        return None
    return value if isinstance(value, str) else json_text(value)


def _json_groups(records: RecordSet, field_name: str) -> pa.Array:
    """Each valid record's top-level `field_name` as text (null where absent; rejected records: null)."""
    rows = records.valid_rows()
    out: list[str | None] = [None] * len(records)
    for row, data in zip(rows.tolist(), record_bytes(records.byte_path, records.table)(rows)):
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out[row] = group_text(obj.get(field_name))
    return strings(out)


def _output_kind(records: RecordSet, out_format: str) -> str:
    """The container an output is written as: `out_format`, or the input's own for 'same'."""
    return out_format if out_format != "same" else records.layout.container


def check_annotatable(records: RecordSet, out_format: str = "same") -> None:
    """Raise FormatError unless `write_records(..., members=...)` can annotate this output (JSON records only):
    callers check before the expensive work, not after it."""
    writer = _output_kind(records, out_format)
    if writer in WRITERS:
        raise FormatError(f"--annotate edits the input's own JSON records; {writer} output is not one: drop "
                          "--annotate, or convert the input to JSONL first and annotate that")


def write_records(records: RecordSet, keep: np.ndarray, out: str | os.PathLike, out_format: str = "same",
                  members: dict[str, list] | None = None) -> Path:
    """Write the records at row positions `keep` in the input's own format (JSON values unchanged, Parquet rows
    and tar members byte for byte), in input order; `out_format` 'llava-json' / 'llava-jsonl' converts instead
    (images embedded in the input are then written to a folder beside `out`). A `.gz` / `.zst` suffix on `out`
    compresses the output.

    `members` (name -> one value per entry of `keep`, in `keep`'s order) sets top-level members on the written
    JSON records (`select --annotate`); every other byte of each record stays as it was (`selector.core.annotate`).
    """
    out = Path(out)
    keep = np.asarray(keep, dtype=np.int64)
    order = np.argsort(keep, kind="stable")
    rows = keep[order]
    take = to_arrow(rows)
    if records.table.column("reason").take(take).null_count != len(rows):
        raise ValueError("cannot write rejected records")
    if out_format not in OUT_FORMATS:
        raise FormatError(f"unknown output format {out_format!r}; choose one of {', '.join(OUT_FORMATS)}")
    writer = _output_kind(records, out_format)
    if members:
        check_annotatable(records, out_format)
    if writer in WRITERS:
        return WRITERS.get(writer)(records, rows, out)
    kind = compression_for_output(out)
    edit = _member_editor(members, order)
    if records.layout.container == "jsonl":
        _check_unchanged(records)
        offsets = to_numpy(records.table.column("offset").take(take))
        lengths = to_numpy(records.table.column("length").take(take))
        chunks = _byte_ranges(records.byte_path, offsets, lengths)
        if edit is not None:
            chunks = (edit(n, chunk[:-1]) + b"\n" for n, chunk in enumerate(chunks))
        atomic_write(out, compress(chunks, kind))
        return out
    raws = records.table.column("raw").take(take).to_pylist()
    if edit is not None:
        raws = [edit(n, r.encode("utf-8")).decode("utf-8") for n, r in enumerate(raws)]
    if records.layout.container == "json":
        atomic_write(out, compress([b"[\n", ",\n".join(raws).encode("utf-8"), b"\n]\n"], kind))
    else:  # the container's other fields re-serialised, the annotations as their exact source text
        hole = "\x00annotations\x00"
        doc = json.dumps({**(records.container or {}), "annotations": hole}, ensure_ascii=False, indent=4)
        doc = doc.replace(json.dumps(hole), "[\n" + ",\n".join(raws) + "\n    ]", 1)
        atomic_write(out, compress([doc.encode("utf-8"), b"\n"], kind))
    return out


def _member_editor(members: dict[str, list] | None, order: np.ndarray):
    """(n, record bytes) -> the bytes with `members` set, for the n-th record written (file order); None if none."""
    if not members:
        return None
    from selector.core.annotate import with_member

    def edit(n: int, data: bytes) -> bytes:
        for name, values in members.items():
            data = with_member(data, name, values[int(order[n])])
        return data
    return edit


def _byte_ranges(path: Path, offsets: np.ndarray, lengths: np.ndarray) -> Iterable[bytes]:
    with open(path, "rb") as f:
        for off, n in zip(offsets.tolist(), lengths.tolist()):
            f.seek(off)
            yield f.read(n) + b"\n"


def _check_unchanged(records: RecordSet) -> None:
    st = records.byte_path.stat()
    if (st.st_size, st.st_mtime_ns) != records.meta.get("source_stat"):
        raise FormatError(f"{records.path} changed since it was read; re-run the selection")


_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.S)  # a value quoted by `formats.shown`
_NUMBERED = re.compile(r"\s*\((?:turn|message) \d+\)|\s*\(first seen at line \d+\)")


def reason_kind(reason: str) -> str:
    """A rejection reason without its record-specific parts, so reasons can be counted by kind: quoted values
    ("image path '../x' leaves the images root" -> 'image path leaves the images root'), turn and line numbers,
    a value after "got", and the detail after ': ' ('image file missing: a/b.png' -> 'image file missing'; a
    parenthesis the cut leaves open goes whole). What is left is whole words of the message, never a value or a
    message cut in half."""
    kind = _NUMBERED.sub("", _QUOTED.sub("", reason))
    kind = re.sub(r",? got .*$", "", kind, flags=re.S).split(": ", 1)[0]
    while kind.count("(") > kind.count(")"):  # a parenthesis opened before the cut: drop it whole
        kind = kind[:kind.rindex("(")]
    return re.sub(r"\s+", " ", kind).strip() or reason


class MostlyRejected(MmselectError):
    """One kind of rejection covers most records: the run would select from whatever few happened to pass."""


def check_rejections(records: RecordSet, allow: bool = False) -> None:
    """Stop when one kind of rejection covers more than half of the records: most often a wrong `--images` (every
    image 'missing') or the wrong file. `allow` (--allow-rejects) goes on with the rest."""
    if allow or len(records) == 0:
        return
    reasons = records.table.column("reason")
    if reasons.null_count * 2 >= len(records):
        return
    from collections import Counter

    kind, count = Counter(reason_kind(r) for r in reasons.drop_null().to_pylist()).most_common(1)[0]
    if count * 2 <= len(records):
        return
    hint = ""
    if "image" in kind:
        hint = f"; is --images right? (images root: {records.images_root})"
    elif "invalid" in kind or "not a JSON object" in kind or "no conversation" in kind:
        hint = "; is this the right file and --format?"
    raise MostlyRejected(f"{count} of {len(records)} records of {records.path} rejected for the same reason: "
                         f"{kind}{hint}. Pass --allow-rejects to go on with the rest")


def write_rejected(records: RecordSet, out: str | os.PathLike) -> Path:
    """`<out>.rejected.jsonl`: one `{"line", "id", "reason"}` per rejected record."""
    path = Path(f"{out}.rejected.jsonl")
    atomic_write(path, (orjson.dumps(r) + b"\n" for r in records.rejected(fragments=True)))
    return path
