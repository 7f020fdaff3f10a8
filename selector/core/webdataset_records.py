"""WebDataset tar shards as instruction records, and the selected samples written back as a shard.

A sample is a run of consecutive members sharing a key (the member name up to the first dot of its base name,
webdataset's own rule): images are the image members (`.jpg`, `.png`, `.webp`, ...), the text comes from `.json`
(LLaVA-style `conversations`, or `caption` / `text`) or else `.txt` (a caption). A caption sample reads as
cc_sbu_align does: the instruction "Describe this image in detail." and the caption as the answer. The id is the
JSON's `id` when it has one, else the sample key (`__key__`).

Per sample, and never for the whole shard: a missing text or image member, an unreadable text, a member that is
not a regular file (symlink, hard link, device), a name that is absolute or climbs with `..`, a member repeated
within a sample, or a shard cut inside a member rejects that sample with a reason. Members with other extensions
are kept (and written back) and counted per sample as `extra` in `RecordSet.meta["webdataset"]`. A shard that
ends early costs only the samples it cuts: the ones before are read.

Why tarfile and not the `webdataset` package: reading needs each member's byte offsets (images are decoded later,
in worker processes, straight from the shard; outputs copy members), which webdataset's streaming iterators do not
expose, and `import webdataset` loads torch, which `selector.core` must not. Writing copies each kept member's tar
blocks (header, extended headers, data, padding) byte for byte instead of re-encoding headers with `tarfile`, so
names, modes, times and data stay exactly as they were.
"""
from __future__ import annotations

import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson

from selector.core.arrow_numpy import strings
from selector.core.compressed import NAMES, sniff_compression
from selector.core.embedded import tar_ref
from selector.core.errors import FormatError, RecordError
from selector.core.formats import BOM, CC_SBU_INSTRUCTION, ID_KINDS, Layout, Parsed, parse_conversations, shown
from selector.core.io import atomic_write
from selector.core.records import (Columns, RecordSet, finish_source_records, group_text,
                                   mark_duplicate_ids, mark_repeats, valid_positions)
from selector.core.sources import IMAGE_EXTENSIONS, Source

log = logging.getLogger(__name__)
BLOCK = 512
MAX_TEXT_BYTES = 16 << 20  # a .json / .txt member larger than this is a rejection, not read into memory
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators.base_plus_ext's rule
_TEXT_EXTENSIONS = ("json", "txt")


@dataclass
class _Sample:
    key: str
    shard: int
    members: list[tuple[str, tarfile.TarInfo]] = field(default_factory=list)  # (extension, member)
    problem: str | None = None


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/") or "\x00" in name


def _member_kind(m: tarfile.TarInfo) -> str | None:
    if m.isreg():
        return None
    if m.issym():
        return "a symlink"
    if m.islnk():
        return "a hard link"
    return "not a regular file"


def _samples(path: Path, shard: int, problems: list[str]) -> Iterator[_Sample]:
    """The samples of one shard, in order; a shard that ends early yields what it holds up to there."""
    size = path.stat().st_size
    current: _Sample | None = None
    if size == 0:
        problems.append(f"{path.name}: empty (0 bytes); no sample in it")
        return
    try:
        tf = tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        # Its samples cannot be counted, so none can be accounted for: stop (as for a cut Parquet file).
        raise FormatError(f"{path}: not a readable tar shard ({exc}){_compressed_hint(path)}") from None
    with tf:
        while True:
            try:
                m = tf.next()
            except (tarfile.TarError, OSError) as exc:
                problems.append(f"{path.name}: stops at a broken header after byte {tf.offset} ({exc})")
                if current is not None:
                    current.problem = current.problem or f"shard {path.name} is cut or corrupt after this sample's members"
                break
            if m is None:
                break
            if m.isdir():
                continue
            match = _KEY.match(m.name)
            if match is None:
                problems.append(f"{path.name}: member {shown(m.name)} has no extension; not part of any sample")
                continue
            key, ext = match.group(1), match.group(2).lower()
            if current is None or current.key != key:
                if current is not None:
                    yield current
                current = _Sample(key, shard)
            if any(e == ext for e, _ in current.members):
                current.problem = current.problem or f"member {shown(m.name)} appears twice"
            current.members.append((ext, m))
            why = _member_kind(m)
            if _unsafe(m.name):
                current.problem = current.problem or f"member name {shown(m.name)} is absolute or leaves its folder"
            elif why:
                current.problem = current.problem or f"member {shown(m.name)} is {why}; only regular files are read"
            elif m.offset_data + m.size > size:
                current.problem = current.problem or f"shard {path.name} is cut inside member {shown(m.name)}"
    if current is not None:
        yield current


def _compressed_hint(path: Path) -> str:
    """What to do about a shard that is a compressed tar (members are read by offset, so it must be plain)."""
    kind = sniff_compression(path)
    return f"; it is {NAMES[kind]}-compressed: decompress it to a plain .tar first" if kind else ""


def _text_record(sample: _Sample, f, images: list[str]) -> tuple[Parsed, dict | None]:
    """The sample's verdict from its .json (preferred) or .txt member, and its JSON object (None for .txt)."""
    text = {e: m for e, m in sample.members if e in _TEXT_EXTENSIONS}
    ext = "json" if "json" in text else "txt" if "txt" in text else None
    if ext is None:
        return Parsed(sample.key, "", "", [], "sample has no .json or .txt member"), None
    m = text[ext]
    if m.size > MAX_TEXT_BYTES:
        return Parsed(sample.key, "", "", [], f".{ext} member larger than {MAX_TEXT_BYTES >> 20} MiB"), None
    f.seek(m.offset_data)
    data = f.read(m.size)
    if ext == "txt":
        try:
            caption = data.removeprefix(BOM).decode("utf-8")
        except UnicodeDecodeError as exc:
            return Parsed(sample.key, "", "", [], f".txt member is not valid UTF-8 (byte {exc.start})"), None
        if not caption.strip():
            return Parsed(sample.key, "", "", [], "empty answer"), None
        return Parsed(sample.key, CC_SBU_INSTRUCTION, caption.strip(), images), None
    try:
        obj = orjson.loads(data.removeprefix(BOM))  # a byte-order mark is read past, as in a JSON / JSONL input
    except orjson.JSONDecodeError as exc:
        return Parsed(sample.key, "", "", [], f".json member is invalid JSON: {exc}"), None
    if not isinstance(obj, dict):
        return Parsed(sample.key, "", "", [], ".json member is not a JSON object"), None
    rid = obj.get("id")
    if rid is None:
        rid, kind = sample.key, ID_KINDS["string"]
    elif isinstance(rid, str):
        kind = ID_KINDS["string"]
    elif isinstance(rid, int) and not isinstance(rid, bool):
        rid, kind = str(rid), ID_KINDS["json"]
    else:
        return Parsed(sample.key, "", "", [], f"id must be a string or a number, got {shown(rid)}"), obj
    if "conversations" in obj:
        p = parse_conversations({"conversations": obj["conversations"], "images": images}, rid)
        return Parsed(rid, p.instruction, p.answer, p.images, p.reason, kind), obj
    caption = obj.get("caption", obj.get("text"))
    if not isinstance(caption, str) or not caption.strip():
        return Parsed(rid, "", "", [], "no conversations, caption or text in the .json member"), obj
    return Parsed(rid, CC_SBU_INSTRUCTION, caption.strip(), images, None, kind), obj


def _end(m: tarfile.TarInfo) -> int:
    """Where member `m`'s blocks end (its data padded to a whole block)."""
    return m.offset_data + -(-m.size // BLOCK) * BLOCK


def read_webdataset_records(source: Source, *, images=None, strict: bool = False, check_image_files: bool = True,
                            dedup: bool = True, workers: int = 1, columns: dict[str, str] | None = None,
                            group_by: str | None = None) -> RecordSet:
    """Read, parse and validate WebDataset shards (see the module docstring) into a `RecordSet`."""
    if columns:
        raise FormatError("--columns maps table columns; WebDataset samples are read by member extension")
    cols = Columns()
    problems: list[str] = []
    spans: list[list[tuple[int, int, int]]] = []  # per sample: (shard, first byte, end byte) of each member
    texts: list[tuple[int, int, int] | None] = []  # per sample: the text member's (shard, offset, size)
    extras: dict[str, int] = {}
    groups: list[str | None] = []
    content: list[bytes] = []
    line = 0
    for shard, path in enumerate(source.files):
        real = str(Path(path).resolve())
        with open(path, "rb") as f:
            for sample in _samples(Path(path), shard, problems):
                line += 1
                refs = [tar_ref(real, m.offset_data, m.size) for e, m in sample.members
                        if e in IMAGE_EXTENSIONS and not sample.problem]
                spans.append([(shard, m.offset, _end(m)) for _, m in sample.members])
                text = next((m for e, m in sample.members if e == "json"), None) or \
                    next((m for e, m in sample.members if e == "txt"), None)
                texts.append((shard, text.offset_data, text.size) if text is not None else None)
                for e, _ in sample.members:
                    if e not in IMAGE_EXTENSIONS and e not in _TEXT_EXTENSIONS:
                        extras[e] = extras.get(e, 0) + 1
                obj = None
                if sample.problem:
                    parsed = Parsed(sample.key, "", "", [], sample.problem)
                else:
                    parsed, obj = _text_record(sample, f, refs)
                    if parsed.reason is None and not refs:
                        parsed = Parsed(parsed.id, "", "", [], "sample has no image member", parsed.id_kind)
                groups.append(group_text(obj.get(group_by)) if group_by and isinstance(obj, dict) else None)
                turns = obj.get("conversations") if isinstance(obj, dict) else None
                content.append(orjson.dumps([turns or [parsed.instruction, parsed.answer],
                                             [_digest(f, m) for e, m in sample.members if e in IMAGE_EXTENSIONS]
                                             if parsed.reason is None else []]))
                if strict and parsed.reason:
                    raise RecordError(parsed.reason, path=str(path), line=line, record_id=parsed.id)
                cols.add(line, parsed)
    for p in problems:
        log.warning("%s", p)
    table = mark_duplicate_ids(cols.table())
    if dedup:
        table = mark_repeats(table, valid_positions(table), content)
    table, root, path, stats = finish_source_records(table, source, images, check_image_files, workers, strict)
    offsets = np.zeros(len(spans) + 1, np.int64)
    np.cumsum([len(s) for s in spans], out=offsets[1:])
    flat = np.array([x for s in spans for x in s], dtype=np.int64).reshape(-1, 3)
    return RecordSet(path=path, layout=Layout("webdataset", "webdataset"), images_root=root, table=table,
                     meta={"source_stat": stats, "spans": (offsets, flat), "texts": texts,
                           "webdataset": {"shard_problems": problems, "extra_members": extras}},
                     source=source, groups=strings(groups) if group_by else None)


def _digest(f, m: tarfile.TarInfo) -> str:
    """A member's data digest (for the duplicate-content check), read in 1 MiB pieces."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    f.seek(m.offset_data)
    left = m.size
    while left > 0:
        piece = f.read(min(left, 1 << 20))
        if not piece:
            break
        h.update(piece)
        left -= len(piece)
    return h.hexdigest()


def member_bytes(records: RecordSet, rows: np.ndarray) -> Iterator[bytes]:
    """The tar blocks of every member of the samples at `rows` (ascending), exactly as they are in the shards."""
    offsets, flat = records.meta["spans"]
    handles: dict[int, object] = {}
    try:
        for row in np.asarray(rows, np.int64).tolist():
            for shard, start, end in flat[offsets[row]:offsets[row + 1]].tolist():
                f = handles.get(shard)
                if f is None:
                    f = handles[shard] = open(records.files[shard], "rb")
                f.seek(start)
                left = end - start
                while left > 0:
                    piece = f.read(min(left, 1 << 20))
                    if not piece:
                        raise FormatError(f"{records.files[shard]} changed since it was read; re-run the selection")
                    left -= len(piece)
                    yield piece
    finally:
        for f in handles.values():
            f.close()


def write_webdataset_records(records: RecordSet, rows: np.ndarray, out: Path) -> Path:
    """The samples at `rows` as one tar shard: their members' blocks copied byte for byte, then the end-of-archive
    blocks, padded to tar's 10240-byte record like `tarfile` pads."""
    now = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in records.files)
    if now != records.meta["source_stat"]:
        raise FormatError(f"{records.path} changed since it was read; re-run the selection")

    def chunks() -> Iterator[bytes]:
        written = 0
        for piece in member_bytes(records, rows):
            written += len(piece)
            yield piece
        end = written + 2 * BLOCK
        yield b"\0" * (2 * BLOCK + (-end % tarfile.RECORDSIZE))

    atomic_write(Path(out), chunks())
    return Path(out)
