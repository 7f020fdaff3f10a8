"""Vectorised parsing of conversation-style JSONL (LLaVA / ShareGPT) blocks with Arrow.

pyarrow's multithreaded C++ JSON reader parses a block into columns, and Arrow compute kernels apply the same
rules as `selector.formats.parse_conversations`, so a clean million-record file is validated without a Python call
per record. The reader first runs with the lean schema most files use (turns as `{"from", "value"}`); a block with
a turn lacking either key is re-read with the alternative keys (`role`, `content`) too. Any block the reader cannot
type (numeric ids, non-object lines, list-valued images, blank lines, invalid UTF-8, ...) returns None and is
parsed record by record instead; the results are identical either way.

Validation runs per record batch of the reader (a few MiB each) rather than on the concatenated block: the batch's
columns stay in cache and no 100 MiB copy is made to combine chunks.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from selector.core.arrow_numpy import scalar, strings, to_arrow, to_numpy
from selector.core.dedup import string_buffers
from selector.core.formats import ASSISTANT_ROLES, SYSTEM_ROLES, USER_ROLES, shown

READ_BLOCK = 1 << 22  # reader block: small enough that every core gets several
_FROM_VALUE = pa.struct([("from", pa.string()), ("value", pa.string())])
_ANY_KEYS = pa.struct([("from", pa.string()), ("role", pa.string()), ("value", pa.string()), ("content", pa.string())])


def _parse_options(turn: pa.DataType) -> pj.ParseOptions:
    return pj.ParseOptions(
        explicit_schema=pa.schema([("id", pa.string()), ("image", pa.string()), ("images", pa.list_(pa.string())),
                                   ("conversations", pa.list_(turn))]),
        unexpected_field_behavior="ignore")


_LEAN, _FULL = _parse_options(_FROM_VALUE), _parse_options(_ANY_KEYS)
_EMPTY = scalar("")
_ZERO = scalar(np.int32(0))
USER, ASSISTANT, SYSTEM, UNKNOWN = 0, 1, 2, 3


def _line_geometry(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Start offsets and lengths (without '\\n' or a trailing '\\r') of the lines in `data`; None if one is empty."""
    buf = np.frombuffer(data, dtype=np.uint8)
    step = 1 << 22  # scanned in cache-sized pieces: 2-5x faster than one pass over a large block
    ends = np.concatenate([np.flatnonzero(buf[a:a + step] == 10) + a for a in range(0, len(buf), step)] or
                          [np.empty(0, np.int64)])
    if len(data) and data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.empty(0, np.int64)
    lengths = ends - starts
    if len(lengths) and lengths.min() == 0:
        return None
    cr = buf[np.maximum(ends - 1, 0)] == 13
    return starts.astype(np.int64), (lengths - cr).astype(np.int64)


def _first_per_row(parent: np.ndarray, flat_idx: np.ndarray, n_rows: int) -> np.ndarray:
    """For each row, the first flat index (in order) among `flat_idx` belonging to it, or -1."""
    out = np.full(n_rows, -1, dtype=np.int64)
    rows, first = np.unique(parent[flat_idx], return_index=True)
    out[rows] = flat_idx[first]
    return out


_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_ASCII_SPACE[0x80:] = True  # any non-ASCII byte might belong to a Unicode space: check those strings properly


def _may_need_trim(strings: pa.Array) -> bool:
    """False when no string starts or ends with a byte that could be whitespace, so trimming can be skipped (it
    allocates a copy of the column); read from the Arrow buffers without touching the text in between."""
    if strings.null_count:
        return True
    offsets, data = string_buffers(strings)
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    if not nonempty.any():
        return False
    first, last = offsets[:-1][nonempty], offsets[1:][nonempty] - 1
    return bool(_ASCII_SPACE[data[first]].any() or _ASCII_SPACE[data[last]].any())


def _may_contain(strings: pa.Array, token: bytes) -> bool:
    """False when no value of a string array contains `token`; True may be a match spanning two values.

    Scans the data buffer for the token's first byte, then compares the token at those places only. pyarrow's
    `match_substring` runs a search per value and took ten times longer on text without the token."""
    offsets, data = string_buffers(strings)
    data = data[offsets[0]:offsets[-1]]
    at = np.flatnonzero(data == token[0])
    at = at[at <= len(data) - len(token)]
    window = data[at[:, None] + np.arange(len(token))]
    return bool((window == np.frombuffer(token, np.uint8)).all(axis=1).any())


def _role_kinds(role: pa.Array) -> np.ndarray:
    """USER / ASSISTANT / SYSTEM / UNKNOWN per turn, classifying each distinct role string once."""
    enc = pc.dictionary_encode(role)
    kinds = {**{r: USER for r in USER_ROLES}, **{r: ASSISTANT for r in ASSISTANT_ROLES},
             **{r: SYSTEM for r in SYSTEM_ROLES}}
    lut = np.array([kinds.get(r, UNKNOWN) for r in enc.dictionary.to_pylist()] + [UNKNOWN], dtype=np.int8)
    codes = to_numpy(enc.indices, null=len(enc.dictionary))
    return lut[codes]


def _take_turns(value: pa.Array, index: np.ndarray) -> pa.Array:
    """`value[index]` per row, "" where a row has no such turn (index -1), and for every row when the batch holds no
    turn at all (a batch of records without conversations: take on an empty array would be out of bounds)."""
    if len(value) == 0:
        return pa.array([""] * len(index), value.type)
    return pc.take(value, to_arrow(np.maximum(index, 0)))


def conversation_rows(batch: pa.RecordBatch, full: bool, first_line: int, starts: np.ndarray, lengths: np.ndarray,
                      schema: pa.Schema) -> tuple[pa.RecordBatch, np.ndarray] | None:
    """The SCHEMA columns of one batch (columns id, image, conversations: a list of {from, value}, or with `full`
    {from, role, value, content}) and each row's count of keys the reader saw; None when a turn lacks a key the
    lean schema reads (or is null). The Parquet / Arrow reader uses it too, so table rows get the same verdicts."""
    n = batch.num_rows
    conv = batch.column("conversations")
    offsets = to_numpy(conv.offsets).astype(np.int64)
    turns = conv.values.slice(offsets[0], offsets[-1] - offsets[0])
    offsets -= offsets[0]
    n_turns = np.diff(offsets)
    if turns.null_count:  # a turn that is JSON null: the per-record parser words that rejection
        return None
    if full:
        role = pc.coalesce(turns.field("from"), turns.field("role"))
        value = pc.coalesce(turns.field("value"), turns.field("content"))
    else:
        role, value = turns.field("from"), turns.field("value")
        if role.null_count or value.null_count:
            return None
    parent = np.repeat(np.arange(n, dtype=np.int64), n_turns)
    # Keys the reader saw, per row: the line's key tokens must number the same, else the line holds a duplicate
    # key, a null, or a field the reader ignores (where orjson's verdict might differ): the caller reparses it.
    seen = sum(to_numpy(pc.is_valid(batch.column(c))).astype(np.int64) for c in ("id", "image", "conversations"))
    turn_keys = (sum(to_numpy(pc.is_valid(turns.field(f))).astype(np.int64) for f in ("from", "role", "value", "content"))
                 if full else np.full(len(turns), 2, np.int64))
    seen = seen + np.bincount(parent, weights=turn_keys, minlength=n).astype(np.int64)
    turn_no = np.arange(len(turns), dtype=np.int64) - offsets[parent] + 1
    kind = _role_kinds(role)
    is_asst = kind == ASSISTANT
    asst_idx = np.flatnonzero(is_asst)
    answers = pc.take(value, to_arrow(asst_idx))
    # "" or all whitespace (utf8_is_space is false for ""), without materialising trimmed copies
    empty = pc.or_(pc.equal(pc.binary_length(answers), _ZERO), pc.utf8_is_space(answers))
    bad = kind == UNKNOWN
    bad[asst_idx] |= to_numpy(empty, null=True)
    n_answers = np.bincount(parent[asst_idx], minlength=n)
    no_conv = (n_turns == 0) | to_numpy(pc.is_null(conv))
    reasons = None
    if bad.any() or no_conv.any() or (n_answers == 0).any():
        reasons = [None] * n
        for r in np.flatnonzero(no_conv):
            reasons[r] = "no conversation"
        first_bad = _first_per_row(parent, np.flatnonzero(bad), n)
        for r in np.flatnonzero(first_bad >= 0):
            if reasons[r] is None:
                k = first_bad[r]
                reasons[r] = (f"unknown role {shown(role[int(k)].as_py())} (turn {turn_no[k]})" if kind[k] == UNKNOWN
                              else f"empty answer (turn {turn_no[k]})")
        for r in np.flatnonzero(n_answers == 0):
            if reasons[r] is None:
                reasons[r] = "no answer"
        ok = np.array([x is None for x in reasons])
    else:
        ok = np.ones(n, bool)

    line = to_arrow(np.arange(first_line, first_line + n, dtype=np.int64))
    ids = batch.column("id")  # null: an automatic id, numbered by the reader once the whole file's lines are known
    id_kind = np.where(to_numpy(pc.is_null(ids)), np.int8(2), np.int8(0)) if ids.null_count else np.zeros(n, np.int8)
    heads = offsets[:-1]
    if n and (n_turns > 0).all() and (kind[np.minimum(heads, len(kind) - 1)] == USER).all():
        first_user = heads  # the usual layout: every conversation opens with the user's turn
    else:
        first_user = _first_per_row(parent, np.flatnonzero(kind == USER), n)
    instruction = _take_turns(value, first_user)
    if instruction.null_count:
        instruction = pc.fill_null(instruction, _EMPTY)
    if _may_contain(instruction, b"<image>"):
        instruction = pc.replace_substring(instruction, "<image>", "")
    if _may_need_trim(instruction):
        instruction = pc.utf8_trim_whitespace(instruction)
    if not (ok & (first_user >= 0)).all():
        instruction = pc.if_else(to_arrow(ok & (first_user >= 0)), instruction, _EMPTY)
    if (n_answers == 1).all():  # one answer per row: the answers in order are the column
        answer = answers
    elif n_answers.max(initial=0) <= 1:
        answer = _take_turns(value, _first_per_row(parent, asst_idx, n))
    else:
        answer = pa.ListArray.from_arrays(to_arrow(np.concatenate(([0], np.cumsum(n_answers))).astype(np.int32)),
                                          answers)
        answer = pc.binary_join(answer, scalar("\n\n"))
    if not ok.all():
        answer = pc.if_else(to_arrow(ok), answer, _EMPTY)
    image = batch.column("image")
    has_image = ok if image.null_count == 0 else (ok & to_numpy(pc.is_valid(image)))
    if has_image.all():
        images = pa.ListArray.from_arrays(to_arrow(np.arange(n + 1, dtype=np.int32)), image)
    else:
        images = pa.ListArray.from_arrays(to_arrow(np.concatenate(([0], np.cumsum(has_image))).astype(np.int32)),
                                          pc.filter(image, to_arrow(has_image)))
    columns = {
        "line": line, "id": ids,
        "instruction": instruction, "answer": answer, "images": images,
        "offset": to_arrow(starts), "length": to_arrow(lengths), "raw": pa.nulls(n, pa.string()),
        "reason": pa.nulls(n, pa.string()) if reasons is None else strings(reasons),
        "id_kind": to_arrow(id_kind),
    }
    return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema), seen


_WS = np.zeros(256, dtype=bool)
_WS[[9, 13, 32]] = True
_SURROGATE_LEAD = np.zeros(256, dtype=bool)
_SURROGATE_LEAD[[ord(c) for c in "89abAB"]] = True


def _line_of(pos: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.searchsorted(starts, pos, side="right") - 1


def key_tokens(data: bytes, starts: np.ndarray) -> np.ndarray:
    """Per line: how many `"` + optional blanks + `:` it holds (each object key ends so; `\\":` inside a string
    also counts, which only sends that line to the exact parser)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    colon = np.flatnonzero(buf == 58)
    prev = colon - 1
    blank = (prev >= 0) & _WS[buf[np.maximum(prev, 0)]]
    while blank.any():
        prev[blank] -= 1
        blank &= (prev >= 0) & _WS[buf[np.maximum(prev, 0)]]
    keys = colon[(prev >= 0) & (buf[np.maximum(prev, 0)] == 34)]
    return np.bincount(_line_of(keys, starts), minlength=len(starts)).astype(np.int64)


def surrogate_escapes(data: bytes, starts: np.ndarray) -> np.ndarray:
    """Per line: whether it holds a `\\uD800`-`\\uDFFF` escape (the two parsers disagree on lone surrogates)."""
    out = np.zeros(len(starts), dtype=bool)
    buf = np.frombuffer(data, dtype=np.uint8)
    at = np.flatnonzero(buf[:-3] == 92) if len(buf) > 3 else np.empty(0, np.int64)
    at = at[(buf[at + 1] == 117) & ((buf[at + 2] | 32) == 100) & _SURROGATE_LEAD[buf[at + 3]]]
    out[_line_of(at, starts)] = True
    return out


def invalid_utf8_lines(data: bytes, starts: np.ndarray, limit: int = 256) -> np.ndarray | None:
    """Indices of the lines holding invalid UTF-8 (Arrow's reader does not always refuse them); None when more
    than `limit` do (the per-record parser then takes the whole block)."""
    try:
        data.decode("utf-8")
        return np.empty(0, np.int64)
    except UnicodeDecodeError:
        pass
    view = memoryview(data)
    bad, pos = [], 0
    while len(bad) <= limit:
        try:
            str(view[pos:], "utf-8")
            return np.asarray(bad, dtype=np.int64)
        except UnicodeDecodeError as exc:
            k = int(_line_of(np.array([pos + exc.start]), starts)[0])
            bad.append(k)
            if k + 1 >= len(starts):
                return np.asarray(bad, dtype=np.int64)
            pos = int(starts[k + 1])
    return None


def parse_block(data: bytes, base_offset: int, schema_columns: pa.Schema, reparse=None) -> pa.Table | None:
    """Parse a line-aligned block of conversation JSONL into `schema_columns` (records.SCHEMA); None = fall back.

    Lines whose keys the Arrow reader did not all see (a duplicate key, a null, an extra field) or that hold a
    surrogate escape are handed to `reparse(line_numbers, starts, lengths) -> table` (the per-record parser), so
    every verdict is the per-record parser's; without `reparse` such a block returns None."""
    geometry = _line_geometry(data)
    if geometry is None:
        return None
    starts, lengths = geometry
    bad_utf8 = invalid_utf8_lines(data, starts)
    if bad_utf8 is None or (len(bad_utf8) and reparse is None) or (len(bad_utf8) and lengths[bad_utf8].min() < 2):
        return None
    if len(bad_utf8):  # the reader gets an empty object in their place; the per-record parser judges them
        patched = bytearray(data)
        for k in bad_utf8.tolist():
            patched[starts[k]:starts[k] + lengths[k]] = b"{}" + b" " * int(lengths[k] - 2)
        data = bytes(patched)
    for full in (False, True):
        try:
            tab = pj.read_json(pa.BufferReader(data), parse_options=_FULL if full else _LEAN,
                               read_options=pj.ReadOptions(block_size=READ_BLOCK))
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
            return None
        if tab.num_rows != len(starts) or tab.column("images").null_count != tab.num_rows:
            return None
        batches, seen, row = [], [], 0
        for batch in tab.to_batches():
            out = conversation_rows(batch, full, row + 1, starts[row:row + batch.num_rows] + base_offset,
                                 lengths[row:row + batch.num_rows], schema_columns)
            if out is None:
                break
            batches.append(out[0])
            seen.append(out[1])
            row += batch.num_rows
        else:
            table = pa.Table.from_batches(batches, schema=schema_columns)
            seen = np.concatenate(seen) if seen else np.empty(0, np.int64)
            redo_mask = (key_tokens(data, starts) != seen) | surrogate_escapes(data, starts)
            redo_mask[bad_utf8] = True
            redo = np.flatnonzero(redo_mask)
            if len(redo) == 0:
                return table
            if reparse is None:
                return None
            keep = np.ones(len(starts), dtype=bool)
            keep[redo] = False
            patch = reparse(redo + 1, starts[redo] + base_offset, lengths[redo])
            merged = pa.concat_tables([table.filter(to_arrow(keep)), patch])
            return merged.take(pc.sort_indices(merged.column("line")))
    return None
