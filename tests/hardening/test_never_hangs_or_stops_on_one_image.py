"""Promise: one hostile image costs one record. It never hangs the run (FIFO, a stuck decoder), never stops it
(decompression bomb, NUL byte, a device, a crashing decoder), and the good records around it are selected."""
from __future__ import annotations

import os
import time

import pytest

from selector.core.records import read_records
from tests.hardening.conftest import rec, verdicts, write_jsonl


def hang(path: str):  # a decoder stuck on one file (module level: the worker process imports it)
    if path.endswith("stuck"):
        time.sleep(60)
    return None


def crash(path: str):
    if path.endswith("boom"):
        os._exit(1)
    return "checked"


def bomb(path):
    from PIL import Image

    Image.new("1", (12000, 12000)).save(path)  # 144 M pixels in a ~20 KB file
    return path


@pytest.mark.timeout(60)
def test_hostile_images_cost_one_record_each(tmp_path, png):
    root = tmp_path / "img"
    png(root / "ok.png")
    bomb(root / "bomb.png")
    os.mkfifo(root / "fifo.png")
    (root / "dir.png").mkdir()
    (root / "empty.png").write_bytes(b"")
    (root / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    hostile = ["bomb.png", "fifo.png", "dir.png", "empty.png", "fake.png", "o\x00k.png", "/dev/zero", "",
               "\udcff.png", "a" * 5000 + ".png", "missing.png"]
    rows = [rec(i, image="ok.png") for i in range(20)]
    for k, name in enumerate(hostile):
        rows.insert(2 * k + 1, rec(100 + k, image=name))
    src = tmp_path / "d.jsonl"
    src.write_bytes(b"".join(
        (__import__("json").dumps(r, ensure_ascii=True) if "\udcff" not in str(r) else
         __import__("json").dumps(r).replace("\\udcff", "\\udcff")).encode() + b"\n" for r in rows))
    start = time.monotonic()
    rs = read_records(src, images=root, workers=2)
    assert time.monotonic() - start < 30
    bad = {line for line, r in verdicts(rs).items() if r}
    assert len(bad) == len(hostile) and rs.table.column("reason").null_count == 20
    reasons = " | ".join(r["reason"] for r in rs.rejected())
    assert "decompression bomb" in reasons and "not a regular file" in reasons and "NUL byte" in reasons


@pytest.mark.timeout(60)
def test_a_stuck_decoder_costs_one_image(tmp_path):
    from selector.core.images import decode_all

    paths = [str(tmp_path / f"f{i}") for i in range(6)] + [str(tmp_path / "stuck")] + [str(tmp_path / "g")]
    start = time.monotonic()
    out = decode_all(paths, workers=2, timeout=1.0, decode=hang)
    assert time.monotonic() - start < 20
    assert out[6].startswith("image decode timed out") and out[:6] == [None] * 6 and out[7] is None


@pytest.mark.timeout(60)
def test_a_crashing_decoder_costs_one_image(tmp_path):
    from selector.core.images import decode_all

    paths = ["a", "b", "boom", "c", "d"]
    out = decode_all(paths, workers=1, timeout=10, decode=crash)
    assert out == ["checked", "checked", "image decoder crashed on this file", "checked", "checked"]


@pytest.mark.timeout(30)
def test_a_fifo_as_the_input_file_is_refused_not_read(tmp_path, cli):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    rc, _, err = cli("select", fifo, "--out", tmp_path / "o.jsonl", "--budget", "1")
    assert rc == 2 and "not a regular file" in err


@pytest.mark.timeout(60)
def test_selection_with_a_bomb_among_good_records_writes_output(tmp_path, png, cli):
    png(tmp_path / "ok.png")
    bomb(tmp_path / "bomb.png")
    rows = [rec(i, image="ok.png") for i in range(30)] + [rec(99, image="bomb.png")]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    rc, out, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "5")
    assert rc == 0 and "rejected 1" in out and (tmp_path / "o.jsonl").is_file(), err
