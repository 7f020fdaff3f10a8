"""Compressed JSON / JSONL (`.gz`, `.zst`), read and written transparently.

Reading streams the input into a plain temporary file once: the JSONL reader parses records by byte range and the
writer copies their exact bytes back, so everything after decompression is the uncompressed path, unchanged (same
verdicts, same speed), and memory stays bounded by a read block. Writing compresses the output stream on the way
to the atomic writer. gzip output carries no timestamp or name, so the same selection gives the same bytes.
"""
from __future__ import annotations

import logging
import tempfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from selector.core.errors import FormatError

log = logging.getLogger(__name__)

SUFFIXES = {".gz": "gz", ".gzip": "gz", ".zst": "zst", ".zstd": "zst"}
_MAGIC = {b"\x1f\x8b": "gz", b"\x28\xb5\x2f\xfd": "zst"}
BLOCK = 1 << 20


def compression_of(path: Path) -> str | None:
    """'gz' or 'zst' for a compressed file (by its magic bytes, whatever its name), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def compression_for_output(path: Path) -> str | None:
    """The compression an output path asks for by its suffix (`x.jsonl.gz` -> 'gz'), else None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def plain_name(path: Path) -> str:
    """`data.jsonl.gz` -> `data.jsonl` (format detection looks at the inner suffix)."""
    path = Path(path)
    return path.stem if path.suffix.lower() in SUFFIXES else path.name


def _decompressor(kind: str):
    if kind == "gz":
        return zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _errors(kind: str) -> tuple[type[BaseException], ...]:
    if kind == "gz":
        return (zlib.error,)
    import zstandard

    return (zstandard.ZstdError,)


def decompress_to_temp(path: Path, kind: str) -> tuple[Path, tempfile.TemporaryDirectory, str | None]:
    """Decompress `path` into a file in a new temporary folder: (file, the folder's handle, problem or None).

    A truncated or corrupt stream keeps what decompressed cleanly (its last, cut record is then rejected as invalid
    JSON by the reader) and says where it stopped; concatenated gzip members are all read."""
    holder = tempfile.TemporaryDirectory(prefix="mmselect-")
    out = Path(holder.name) / plain_name(path)
    problem = None
    done = 0
    with open(path, "rb") as src, open(out, "wb") as dst:
        d = _decompressor(kind)
        try:
            while True:
                chunk = src.read(BLOCK)
                if not chunk:
                    break
                done += len(chunk)
                while chunk:
                    dst.write(d.decompress(chunk))
                    chunk = d.unused_data if kind == "gz" and d.eof else b""
                    if chunk:  # the next gzip member
                        d = _decompressor(kind)
            tail = d.flush() if kind == "gz" else b""
            dst.write(tail)
            if not d.eof:
                problem = f"{path}: compressed stream ends early (truncated after {done} bytes)"
        except _errors(kind) as exc:
            problem = f"{path}: corrupt {kind} data near byte {done} ({exc})"
    if problem:
        log.warning("%s; records up to there are read, the cut one is rejected", problem)
    return out, holder, problem


def open_plain(path: Path) -> tuple[Path, object | None, str | None]:
    """(a path holding the plain bytes, a handle that keeps it alive, a problem or None): the file itself when it
    is not compressed, else a decompressed temporary copy."""
    kind = compression_of(path)
    if kind is None:
        return path, None, None
    try:
        return decompress_to_temp(path, kind)
    except OSError as exc:
        raise FormatError(f"{path}: cannot decompress ({exc.strerror or exc})") from None


def compress(chunks: Iterable[bytes], kind: str | None) -> Iterator[bytes]:
    """`chunks` compressed as `kind` ('gz', 'zst') on the fly; unchanged for None. Deterministic bytes."""
    if kind is None:
        yield from chunks
        return
    if kind == "gz":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)  # a gzip header with mtime 0 and no file name
        for chunk in chunks:
            out = c.compress(chunk)
            if out:
                yield out
        yield c.flush()
        return
    import zstandard

    c = zstandard.ZstdCompressor(level=3).compressobj()
    for chunk in chunks:
        out = c.compress(chunk)
        if out:
            yield out
    yield c.flush()
