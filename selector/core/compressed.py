"""Compressed JSON / JSONL, read (gzip, zstd, bzip2, xz) and written (gzip, zstd) transparently.

Reading streams the input into a plain temporary file once: the JSONL reader parses records by byte range and the
writer copies their exact bytes back, so everything after decompression is the uncompressed path, unchanged (same
verdicts, same speed), and memory stays bounded by a read block. Writing compresses the output stream on the way
to the atomic writer. gzip output carries no timestamp or name, so the same selection gives the same bytes.

A stream that ends early or is corrupt stops the run (FormatError): the records past the cut cannot be counted, so
keeping the ones before it would lose the rest silently (a cut zstd block holds no readable record at all).
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

SUFFIXES = {".gz": "gz", ".gzip": "gz", ".zst": "zst", ".zstd": "zst"}  # what an output may ask for
_INPUT_SUFFIXES = {**SUFFIXES, ".bz2": "bzip2", ".xz": "xz"}
# Compressions recognised by their magic bytes, whatever the file's name.
_MAGIC = {b"\x1f\x8b": "gz", b"\x28\xb5\x2f\xfd": "zst", b"BZh": "bzip2", b"\xfd7zXZ": "xz"}
READABLE = frozenset({"gz", "zst", "bzip2", "xz"})
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
    """'gz', 'zst', 'bzip2' or 'xz' for a compressed file this module reads (by its magic bytes), else None."""
    kind = sniff_compression(path)
    return kind if kind in READABLE else None


def compression_for_output(path: Path) -> str | None:
    """The compression an output path asks for by its suffix (`x.jsonl.gz` -> 'gz'), else None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def plain_name(path: Path) -> str:
    """`data.jsonl.gz` -> `data.jsonl` (format detection looks at the inner suffix)."""
    path = Path(path)
    return path.stem if path.suffix.lower() in _INPUT_SUFFIXES else path.name


def _decompressor(kind: str):
    """A streaming decompressor for one stream (gzip member, bzip2 stream, xz stream, zstd frame)."""
    if kind == "gz":
        return zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    if kind == "bzip2":
        import bz2

        return bz2.BZ2Decompressor()
    if kind == "xz":
        import lzma

        return lzma.LZMADecompressor()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _errors(kind: str) -> tuple[type[BaseException], ...]:
    if kind == "gz":
        return (zlib.error,)
    if kind == "bzip2":
        return (OSError, ValueError)  # bz2 reports invalid data as OSError
    if kind == "xz":
        import lzma

        return (lzma.LZMAError,)
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


def _pieces(d, chunk: bytes, kind: str, rest: list[bytes]) -> Iterator[bytes]:
    """Decompress `chunk` through `d` in pieces of at most about BLOCK (gzip, bzip2, xz) or 32 MiB (zstd) bytes.
    When `d`'s stream ends inside `chunk`, the bytes after it (the next stream, or trailing garbage) go to `rest`."""
    if kind == "gz":
        out = d.decompress(chunk, BLOCK)
        while out:
            yield out
            out = d.decompress(d.unconsumed_tail, BLOCK) if d.unconsumed_tail else b""
    elif kind in ("bzip2", "xz"):  # these keep unread input themselves: call again with nothing until they need more
        out = d.decompress(chunk, BLOCK)
        while True:
            if out:
                yield out
            if d.eof or d.needs_input:
                break
            out = d.decompress(b"", BLOCK)
    else:
        for i in range(0, len(chunk), _ZST_IN):
            out = d.decompress(chunk[i:i + _ZST_IN])
            if out:
                yield out
            if d.eof:  # a frame ended: what follows is the next frame (`cat a.zst b.zst`, pzstd), never dropped
                rest.append(d.unused_data + chunk[i + _ZST_IN:])
                return
    if d.eof:
        rest.append(d.unused_data)


NAMES = {"gz": "gzip", "zst": "zstd", "bzip2": "bzip2", "xz": "xz"}


def _cut(path: Path, what: str) -> FormatError:
    return FormatError(f"{path}: {what}; the records past it cannot be read or counted: fetch the file again (or "
                       "decompress what is left yourself and pass that, to keep the records before the cut)")


def decompress_to_temp(path: Path, kind: str) -> tuple[Path, tempfile.TemporaryDirectory]:
    """Decompress `path` into a file in a new temporary folder: (file, the folder's handle).

    Concatenated streams (gzip members, bzip2 / xz streams, zstd frames) are all read. A truncated or corrupt
    stream is an error (FormatError) naming where it stopped: records past a cut cannot be counted, so none may be
    lost silently. A file that expands past `max_expansion()` times its size is refused (FormatError): that is a
    decompression bomb, not a dataset."""
    ratio = max_expansion()
    limit = max(MIN_ALLOWANCE, ratio * Path(path).stat().st_size)
    holder = tempfile.TemporaryDirectory(prefix="mmselect-")
    out = Path(holder.name) / plain_name(path)
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
                        rest: list[bytes] = []
                        for piece in _pieces(d, chunk, kind, rest):
                            written += len(piece)
                            if written > limit:
                                raise FormatError(
                                    f"{path}: expands past {limit:,} bytes ({ratio}x its size): refused as "
                                    f"a likely decompression bomb; if it is real data, decompress it yourself or "
                                    f"raise MMSELECT_MAX_EXPANSION")
                            dst.write(piece)
                        chunk = b"".join(rest)
                        if chunk:  # the next gzip member, bzip2 / xz stream or zstd frame
                            d = _decompressor(kind)
                dst.write(d.flush() if kind == "gz" else b"")
                if not d.eof:
                    raise _cut(path, f"the {NAMES[kind]} stream ends early (truncated after {done:,} bytes)")
            except _errors(kind) as exc:
                raise _cut(path, f"corrupt {NAMES[kind]} data near byte {done:,} ({exc})") from None
    except BaseException:
        holder.cleanup()
        raise
    return out, holder


def open_plain(path: Path) -> tuple[Path, object | None]:
    """(a path holding the plain bytes, a handle that keeps it alive): the file itself when it is not compressed,
    else a decompressed temporary copy."""
    kind = compression_of(path)
    if kind is None:
        return path, None
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
