"""Compressed JSON / JSONL (`.gz`, `.zst`), read and written transparently.

Reading streams the input into a plain temporary file once: the JSONL reader parses records by byte range and the
writer copies their exact bytes back, so everything after decompression is the uncompressed path, unchanged (same
verdicts, same speed), and memory stays bounded by a read block. Writing compresses the output stream on the way
to the atomic writer. gzip output carries no timestamp or name, so the same selection gives the same bytes.
"""
from __future__ import annotations

import logging
import os
import tempfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from selector.core.errors import FormatError

log = logging.getLogger(__name__)

SUFFIXES = {".gz": "gz", ".gzip": "gz", ".zst": "zst", ".zstd": "zst"}
# Compressions recognised by their magic bytes: the first two are read; the others are only named in errors.
_MAGIC = {b"\x1f\x8b": "gz", b"\x28\xb5\x2f\xfd": "zst", b"BZh": "bzip2", b"\xfd7zXZ": "xz"}
READABLE = frozenset({"gz", "zst"})
BLOCK = 1 << 20


def sniff_compression(path: Path) -> str | None:
    """'gz', 'zst', 'bzip2' or 'xz' for a compressed file (by its magic bytes, whatever its name), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def compression_of(path: Path) -> str | None:
    """'gz' or 'zst' for a compressed file this module reads (by its magic bytes, whatever its name), else None."""
    kind = sniff_compression(path)
    return kind if kind in READABLE else None


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


# A decompression bomb (deflate reaches ~1,000:1, zstd ~30,000:1 on runs of one byte) must not fill the disk or the
# memory: output is produced in bounded pieces, and a file that expands past MAX_RATIO times its size (with a floor
# for small files) is refused. Real instruction JSON compresses 5-20x. Override: MMSELECT_MAX_EXPANSION.
MAX_RATIO = 200
MIN_ALLOWANCE = 64 << 20
_ZST_IN = 1 << 10  # zstd input per call: its output per call stays under ~32 MiB whatever the ratio


def max_expansion() -> int:
    """The allowed ratio of decompressed to compressed bytes (environment MMSELECT_MAX_EXPANSION, else MAX_RATIO)."""
    raw = os.environ.get("MMSELECT_MAX_EXPANSION", "")
    try:
        return max(1, int(raw)) if raw else MAX_RATIO
    except ValueError:
        raise FormatError(f"MMSELECT_MAX_EXPANSION must be a whole number, got {raw!r}") from None


def _pieces(d, chunk: bytes, kind: str) -> Iterator[bytes]:
    """Decompress `chunk` through `d` in pieces of at most about BLOCK (gzip) or 32 MiB (zstd) bytes."""
    if kind == "gz":
        out = d.decompress(chunk, BLOCK)
        while out:
            yield out
            out = d.decompress(d.unconsumed_tail, BLOCK) if d.unconsumed_tail else b""
        return
    for i in range(0, len(chunk), _ZST_IN):
        out = d.decompress(chunk[i:i + _ZST_IN])
        if out:
            yield out


def decompress_to_temp(path: Path, kind: str) -> tuple[Path, tempfile.TemporaryDirectory, str | None]:
    """Decompress `path` into a file in a new temporary folder: (file, the folder's handle, problem or None).

    A truncated or corrupt stream keeps what decompressed cleanly (its last, cut record is then rejected as invalid
    JSON by the reader) and says where it stopped; concatenated gzip members are all read. A file that expands past
    `max_expansion()` times its size is refused (FormatError): that is a decompression bomb, not a dataset."""
    ratio = max_expansion()
    limit = max(MIN_ALLOWANCE, ratio * Path(path).stat().st_size)
    holder = tempfile.TemporaryDirectory(prefix="mmselect-")
    out = Path(holder.name) / plain_name(path)
    problem = None
    done = written = 0
    try:
        with open(path, "rb") as src, open(out, "wb") as dst:
            d = _decompressor(kind)
            try:
                while True:
                    chunk = src.read(BLOCK)
                    if not chunk:
                        break
                    done += len(chunk)
                    while chunk:
                        for piece in _pieces(d, chunk, kind):
                            written += len(piece)
                            if written > limit:
                                raise FormatError(
                                    f"{path}: expands past {limit:,} bytes ({ratio}x its size): refused as "
                                    f"a likely decompression bomb; if it is real data, decompress it yourself or "
                                    f"raise MMSELECT_MAX_EXPANSION")
                            dst.write(piece)
                        chunk = d.unused_data if kind == "gz" and d.eof else b""
                        if chunk:  # the next gzip member
                            d = _decompressor(kind)
                tail = d.flush() if kind == "gz" else b""
                dst.write(tail)
                if not d.eof:
                    problem = f"{path}: compressed stream ends early (truncated after {done} bytes)"
            except _errors(kind) as exc:
                problem = f"{path}: corrupt {kind} data near byte {done} ({exc})"
    except BaseException:
        holder.cleanup()
        raise
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
