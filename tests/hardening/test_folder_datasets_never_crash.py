"""Promise: a bad file in an image-folder dataset (`--dataset folder:PATH`) ends the run in one line naming it."""
from __future__ import annotations

import struct
import zlib


def test_a_decompression_bomb_in_a_folder_dataset_is_one_line(folder_dataset, tmp_path, cli):
    """Pillow's DecompressionBombError is not an OSError: it used to end `prune` with a traceback."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    (folder_dataset / "b" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                                                    chunk(b"IDAT", zlib.compress(b"\0" * 30001)) + chunk(b"IEND", b""))
    rc, _, err = cli("prune", "--dataset", f"folder:{folder_dataset}", "--out", tmp_path / "p.json",
                     "--method", "random", "--keep", "0.5")
    assert rc == 2 and "decompression bomb" in err and "bomb.png" in err and len(err.strip().splitlines()) == 1, err
