"""Promise: a bad entry in an image-folder dataset (`--dataset folder:PATH`) costs that example, not the run: it is
left out, named in the output with its reason, and the kept files are still the right files."""
from __future__ import annotations

import json
import os
import struct
import time
import zlib

import pytest


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
    assert "decompression bomb" in reasons["b/bomb.png"]
    assert reasons["a/cut.png"] == "not an image" or "truncated or corrupt" in reasons["a/cut.png"]
    assert reasons["a/notes.jpg"] == "not an image"
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


def stuck_or_crashing_decoder(path: str):  # module level: the forked worker runs it
    from selector.core.images import image_problem

    if path.endswith("stuck.png"):
        time.sleep(60)
    if path.endswith("boom.png"):
        os._exit(1)
    return image_problem(path)


@pytest.mark.timeout(60)
def test_a_stuck_or_crashing_decoder_costs_one_file(folder_dataset, monkeypatch):
    """The folder loader checks files through the instruction readers' killable workers: a decoder that hangs on a
    file or kills its process costs that file."""
    from selector.core import images
    from vision.data import load_image_folder

    real = images.decode_all
    monkeypatch.setattr(images, "decode_all", lambda paths, workers: real(paths, workers=1, timeout=2.0,
                                                                           decode=stuck_or_crashing_decoder))
    good = (folder_dataset / "a" / "0.png").read_bytes()
    (folder_dataset / "a" / "stuck.png").write_bytes(good)
    (folder_dataset / "b" / "boom.png").write_bytes(good)
    t0 = time.monotonic()
    data = load_image_folder(folder_dataset, size=8)
    assert time.monotonic() - t0 < 30
    assert dict(data.rejected) == {"a/stuck.png": "image decode timed out after 2 s",
                                   "b/boom.png": "image decoder crashed on this file"}
    assert len(data) == 8 and sorted(data.labels.tolist()) == [0] * 4 + [1] * 4
