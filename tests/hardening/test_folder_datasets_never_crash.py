"""Promise: a bad entry in an image-folder dataset (`--dataset folder:PATH`) costs that example, not the run: it is
left out, named in the output with its reason, and the kept files are still the right files."""
from __future__ import annotations

import json
import os
import struct
import zlib


def bomb_png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 30001)) +
            chunk(b"IEND", b""))


def test_bad_entries_cost_one_example_each_and_are_listed(folder_dataset, tmp_path, cli, caplog):
    """A decompression bomb, a truncated PNG, text named .jpg, a folder named x.png and a FIFO named y.png: before,
    the first three ended `prune` and the last two vanished without a word."""
    (folder_dataset / "b" / "bomb.png").write_bytes(bomb_png())
    good = (folder_dataset / "a" / "0.png").read_bytes()
    (folder_dataset / "a" / "cut.png").write_bytes(good[: len(good) // 2])
    (folder_dataset / "a" / "notes.jpg").write_text("not an image")
    (folder_dataset / "b" / "x.png").mkdir()
    os.mkfifo(folder_dataset / "b" / "y.png")  # opening it for reading would block forever
    out = tmp_path / "p.json"
    rc, text, err = cli("prune", "--dataset", f"folder:{folder_dataset}", "--out", out, "--method", "random",
                        "--keep", "1.0", "--image-size", "8")
    assert rc == 0, err
    doc = json.loads(out.read_text())
    reasons = {r["file"]: r["reason"] for r in doc["rejected"]}
    assert set(reasons) == {"b/bomb.png", "a/cut.png", "a/notes.jpg", "b/x.png", "b/y.png"}
    assert "decompression bomb" in reasons["b/bomb.png"] and "cannot read image" in reasons["a/cut.png"]
    assert "not a regular file" in reasons["b/x.png"] and "not a regular file" in reasons["b/y.png"]
    # every good file is kept (keep 1.0) and named as itself: positions map to the right files around the gaps
    assert sorted(doc["files"]) == [f"{c}/{i}.png" for c in "ab" for i in range(4)]
    assert doc["total"] == 8 and "5 unreadable files rejected" in text
    labels = dict(zip(doc["files"], (doc["labels"][i] for i in doc["indices"])))
    assert all(labels[f] == (0 if f.startswith("a/") else 1) for f in labels)
    assert "5 of 13 image entries rejected" in caplog.text


def test_a_folder_without_one_usable_image_is_one_line(folder_dataset, tmp_path, cli):
    for f in folder_dataset.rglob("*.png"):
        f.write_bytes(bomb_png())
    rc, _, err = cli("prune", "--dataset", f"folder:{folder_dataset}", "--out", tmp_path / "p.json",
                     "--method", "random", "--keep", "0.5")
    assert rc == 2 and "no usable images" in err and "decompression bomb" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err


def test_condense_reports_what_it_rejected(folder_dataset, tmp_path, cli):
    (folder_dataset / "a" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    out = tmp_path / "s.pt"
    rc, _, err = cli("condense", "--dataset", f"folder:{folder_dataset}", "--method", "dm", "--ipc", "1",
                     "--iterations", "1", "--image-size", "8", "--width", "8", "--out", out)
    assert rc == 0, err
    report = json.loads(out.with_suffix(".json").read_text())
    assert [r["file"] for r in report["rejected"]] == ["a/cut.png"]
