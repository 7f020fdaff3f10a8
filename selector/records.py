"""Read instruction files into a `datasets.Dataset` of records, validate them, and write kept records back.

Every input record ends up in the dataset: valid ones with `reason = None`, rejected ones with their reason.
The original JSON text of each record is kept in `raw`, so output files reproduce the input's JSON values exactly.
"""
from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from selector.errors import FormatError, RecordError
from selector.formats import PARSERS, Layout, Parsed, default_images_root, detect_layout, resolve_input
from selector.images import check_images

SCHEMA = pa.schema([
    ("line", pa.int64()),
    ("id", pa.string()),
    ("instruction", pa.string()),
    ("answer", pa.string()),
    ("images", pa.list_(pa.string())),
    ("raw", pa.string()),
    ("reason", pa.string()),
])
PARALLEL_MIN_BYTES = 32 << 20  # below this a second process costs more than it saves


@dataclass
class RecordSet:
    """All records of one input file. `dataset` has one row per record, rejected ones included."""

    path: Path
    layout: Layout
    images_root: Path | None
    dataset: Any  # datasets.Dataset with SCHEMA's columns
    container: dict | None = None  # cc_sbu: the top-level object without its annotations
    meta: dict = field(default_factory=dict)

    @property
    def table(self) -> pa.Table:
        return self.dataset.data.table

    def valid_mask(self) -> np.ndarray:
        return pc.is_null(self.table.column("reason")).to_numpy(zero_copy_only=False)

    def valid(self):
        """The records that passed validation, as a datasets.Dataset (row order of the file)."""
        import datasets

        return datasets.Dataset(datasets.table.InMemoryTable(self.table.filter(pc.is_null(self.table.column("reason")))))

    def rejected(self) -> list[dict]:
        t = self.table.filter(pc.invert(pc.is_null(self.table.column("reason"))))
        return [{"line": l, "id": i, "reason": r} for l, i, r in
                zip(t.column("line").to_pylist(), t.column("id").to_pylist(), t.column("reason").to_pylist())]

    def __len__(self) -> int:
        return self.table.num_rows


class _Columns:
    """Accumulates parsed records column-wise and flushes them to Arrow batches (no per-record Python objects kept)."""

    def __init__(self, batch_rows: int = 65536):
        self.batch_rows = batch_rows
        self.batches: list[pa.RecordBatch] = []
        self._reset()

    def _reset(self):
        self.cols: dict[str, list] = {name: [] for name in SCHEMA.names}

    def add(self, line: int, parsed: Parsed, raw: str | None):
        c = self.cols
        c["line"].append(line)
        c["id"].append(parsed.id)
        c["instruction"].append(parsed.instruction)
        c["answer"].append(parsed.answer)
        c["images"].append(parsed.images)
        c["raw"].append(raw)
        c["reason"].append(parsed.reason)
        if len(c["line"]) >= self.batch_rows:
            self.flush()

    def flush(self):
        if self.cols["line"]:
            self.batches.append(pa.RecordBatch.from_pydict(self.cols, schema=SCHEMA))
            self._reset()

    def table(self) -> pa.Table:
        self.flush()
        return pa.Table.from_batches(self.batches, schema=SCHEMA)


def _parse_line(data: bytes, line_no: int, parse) -> tuple[Parsed, str | None]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return Parsed(None, "", "", [], f"invalid UTF-8 bytes at byte {uexc.start}"), None
        return Parsed(None, "", "", [], f"invalid JSON: {exc}"), None
    return parse(obj, line_no), data.decode("utf-8")


def _parse_jsonl_range(path: str, start: int, end: int, schema: str, strict: bool) -> tuple[pa.Table, int]:
    """Parse the lines that begin in [start, end); line numbers are relative to `start` (1-based)."""
    parse = PARSERS[schema]
    cols = _Columns()
    n_lines = 0
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        while pos < end:
            data = f.readline()
            if not data:
                break
            pos += len(data)
            n_lines += 1
            data = data.rstrip(b"\r\n")
            if not data.strip():
                continue
            parsed, raw = _parse_line(data, n_lines, parse)
            if strict and parsed.reason:
                raise RecordError(parsed.reason, path=path, line=n_lines, record_id=parsed.id)
            cols.add(n_lines, parsed, raw)
    return cols.table(), n_lines


def _line_aligned_splits(path: Path, parts: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(max(size * k // parts, cuts[-1]))
            f.readline()  # move to the start of the next line
            cuts.append(min(f.tell(), size))
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a] or [(0, 0)]


def _read_jsonl(path: Path, schema: str, strict: bool, workers: int) -> pa.Table:
    size = path.stat().st_size
    parts = workers if size >= PARALLEL_MIN_BYTES and workers > 1 else 1
    ranges = _line_aligned_splits(path, parts)
    if parts == 1:
        results = [_parse_jsonl_range(str(path), a, b, schema, strict) for a, b in ranges]
    else:
        with ProcessPoolExecutor(max_workers=parts) as pool:
            futures = [pool.submit(_parse_jsonl_range, str(path), a, b, schema, strict) for a, b in ranges]
            results = []
            offset = 0
            for fut in futures:  # in file order, so a strict-mode error names the first bad line
                try:
                    results.append(fut.result())
                except RecordError as exc:
                    raise RecordError(exc.reason, path=str(path), line=exc.line + offset, record_id=exc.record_id) from None
                offset += results[-1][1]
    tables, offset = [], 0
    for table, n_lines in results:
        if offset:
            table = table.set_column(0, "line", pc.add(table.column("line"), offset))
        tables.append(table)
        offset += n_lines
    return pa.concat_tables(tables)


def _load_json_value(path: Path) -> Any:
    data = path.read_bytes()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    # Invalid UTF-8 inside one string should cost only that record: decode leniently, flag per record later.
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg}); "
                          "a JSON-list file must parse as a whole (use JSONL to isolate bad lines)") from None


def _read_json_items(path: Path, items: Iterable[Any], schema: str, strict: bool) -> pa.Table:
    parse = PARSERS[schema]
    cols = _Columns()
    for n, obj in enumerate(items, 1):
        raw = json.dumps(obj, ensure_ascii=False)
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            parsed = Parsed(None, "", "", [], "invalid UTF-8 bytes")
            raw = None
        else:
            parsed = parse(obj, n)
        if strict and parsed.reason:
            raise RecordError(parsed.reason, path=str(path), line=n, record_id=parsed.id)
        cols.add(n, parsed, raw)
    return cols.table()


def _mark_duplicates(table: pa.Table) -> pa.Table:
    """Reject every later occurrence of an id; the first occurrence in the file keeps it."""
    ids = table.column("id").to_pylist()
    reasons = table.column("reason").to_pylist()
    lines = table.column("line").to_pylist()
    first: dict[str, int] = {}
    changed = False
    for i, (rid, reason) in enumerate(zip(ids, reasons)):
        if reason is not None or rid is None:
            continue
        if rid in first:
            reasons[i] = f"duplicate id (first seen at line {first[rid]})"
            changed = True
        else:
            first[rid] = lines[i]
    if not changed:
        return table
    return table.set_column(SCHEMA.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))


def _mark_duplicate_content(table: pa.Table) -> pa.Table:
    """Reject later records whose (images, instruction, answer) repeat an earlier valid record exactly."""
    reasons = table.column("reason").to_pylist()
    ids = table.column("id").to_pylist()
    first: dict[tuple, int] = {}
    changed = False
    keys = zip(table.column("images").to_pylist(), table.column("instruction").to_pylist(),
               table.column("answer").to_pylist())
    for i, (imgs, ins, ans) in enumerate(keys):
        if reasons[i] is not None:
            continue
        j = first.setdefault((tuple(imgs), ins, ans), i)
        if j != i:
            reasons[i] = f"duplicate content of id {ids[j]!r}"
            changed = True
    if not changed:
        return table
    return table.set_column(SCHEMA.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))


def _check_record_images(table: pa.Table, root: Path, workers: int) -> pa.Table:
    reason_col = table.column("reason")
    has_images = pc.and_(pc.is_null(reason_col), pc.greater(pc.list_value_length(table.column("images")), 0))
    idx = np.flatnonzero(has_images.to_numpy(zero_copy_only=False))
    if len(idx) == 0:
        return table
    names = table.column("images").take(pa.array(idx)).to_pylist()
    problems = check_images(root, names, workers=workers)
    if not any(problems):
        return table
    reasons = reason_col.to_pylist()
    for i, p in zip(idx, problems):
        if p:
            reasons[i] = p
    return table.set_column(SCHEMA.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))


def read_records(path: str | os.PathLike, *, images: str | os.PathLike | None = None, fmt: str | None = None,
                 strict: bool = False, check_image_files: bool = True, dedup: bool = True,
                 workers: int = 0) -> RecordSet:
    """Read, parse and validate an instruction file (format auto-detected unless `fmt` is given).

    Bad records are kept with a rejection reason; with `strict=True` the first one raises `RecordError`.
    Images are resolved under `images` (default: the file's folder, or `image/` for cc_sbu_align) and fully
    decoded in `workers` processes (0 = one per CPU). With `dedup`, a record repeating an earlier one's images,
    instruction and answer exactly is rejected as a duplicate.
    """
    import datasets

    path = resolve_input(Path(path))
    layout = detect_layout(path, fmt)
    workers = workers or (os.cpu_count() or 1)
    container = None
    if layout.container == "jsonl":
        table = _read_jsonl(path, layout.schema, strict, workers)
    else:
        value = _load_json_value(path)
        if layout.container == "cc_sbu":
            if not isinstance(value, dict) or not isinstance(value.get("annotations"), list):
                raise FormatError(f"{path}: a cc_sbu_align file needs an 'annotations' list")
            container = {k: v for k, v in value.items() if k != "annotations"}
            value = value["annotations"]
        elif not isinstance(value, list):
            raise FormatError(f"{path}: a JSON instruction file must hold a list of records")
        table = _read_json_items(path, value, layout.schema, strict)
    table = _mark_duplicates(table)
    if dedup:
        table = _mark_duplicate_content(table)
    root = Path(images) if images is not None else default_images_root(path, layout)
    if check_image_files:
        table = _check_record_images(table, root, workers)
    if strict:
        bad = table.filter(pc.invert(pc.is_null(table.column("reason"))))
        if bad.num_rows:
            first = bad.slice(0, 1).to_pylist()[0]
            raise RecordError(first["reason"], path=str(path), line=first["line"], record_id=first["id"])
    dataset = datasets.Dataset(datasets.table.InMemoryTable(table))
    return RecordSet(path=path, layout=layout, images_root=root, dataset=dataset, container=container)


def atomic_write(out: Path, chunks: Iterable[bytes]) -> None:
    """Write to a temp file beside `out`, then rename: an interrupted run never leaves half a file in its place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_records(records: RecordSet, keep: np.ndarray, out: str | os.PathLike) -> Path:
    """Write the records at row positions `keep` in the input's own format, in file order, JSON values unchanged."""
    out = Path(out)
    rows = np.sort(np.asarray(keep, dtype=np.int64))
    raws = records.table.column("raw").take(pa.array(rows)).to_pylist()
    if any(r is None for r in raws):
        raise ValueError("cannot write rejected records")
    if records.layout.container == "jsonl":
        atomic_write(out, (r.encode("utf-8") + b"\n" for r in raws))
    elif records.layout.container == "json":
        atomic_write(out, [b"[\n", ",\n".join(raws).encode("utf-8"), b"\n]\n"])
    else:
        doc = dict(records.container or {})
        doc["annotations"] = [json.loads(r) for r in raws]
        atomic_write(out, [json.dumps(doc, ensure_ascii=False, indent=4).encode("utf-8"), b"\n"])
    return out


def write_rejected(records: RecordSet, out: str | os.PathLike) -> Path:
    """`<out>.rejected.jsonl`: one `{"line", "id", "reason"}` per rejected record."""
    path = Path(f"{out}.rejected.jsonl")
    atomic_write(path, (orjson.dumps(r) + b"\n" for r in records.rejected()))
    return path
