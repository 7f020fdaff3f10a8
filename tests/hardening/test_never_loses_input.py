"""Promise: no output path, however it is spelled, replaces an input; a refused run writes nothing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hardening.conftest import rec, write_jsonl


@pytest.fixture
def src(tmp_path):
    return write_jsonl(tmp_path / "in.jsonl", [rec(i) for i in range(12)])


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "dotdot", "symlink", "hardlink"])
def test_select_never_overwrites_its_input(src, tmp_path, cli, monkeypatch, spelling):
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    out = {"same": src, "dot-slash": "./in.jsonl", "dotdot": f"../{tmp_path.name}/in.jsonl",
           "symlink": tmp_path / "link.jsonl", "hardlink": tmp_path / "hard.jsonl"}[spelling]
    if spelling == "symlink":
        os.symlink(src, out)
    if spelling == "hardlink":
        os.link(src, out)
    rc, _, err = cli("select", src, "--out", out, "--budget", "3")
    assert rc == 2 and "overwrite the input" in err and len(err.strip().splitlines()) == 1
    assert src.read_bytes() == before


def test_score_never_overwrites_its_input(src, cli):
    before = src.read_bytes()
    rc, _, err = cli("score", src, "--out", src, "--metrics", "length", "--no-cache")
    assert rc == 2 and "overwrite the input" in err
    assert src.read_bytes() == before


def test_select_side_files_never_overwrite_an_input(tmp_path, cli):
    """OUT.rejected.jsonl and OUT.report.json are outputs too."""
    victim = write_jsonl(tmp_path / "o.jsonl.rejected.jsonl", [rec(i) for i in range(12)])
    before = victim.read_bytes()
    rc, _, err = cli("select", victim, "--out", tmp_path / "o.jsonl", "--budget", "3")
    assert rc == 2 and "overwrite the input" in err and victim.read_bytes() == before


def test_scores_table_is_an_input_too(src, tmp_path, cli):
    rc, _, _ = cli("score", src, "--out", tmp_path / "s.parquet", "--metrics", "length", "--no-cache")
    assert rc == 0
    before = (tmp_path / "s.parquet").read_bytes()
    rc, _, err = cli("select", src, "--out", tmp_path / "s.parquet", "--budget", "3", "--scores", tmp_path / "s.parquet")
    assert rc == 2 and "overwrite the input" in err and (tmp_path / "s.parquet").read_bytes() == before


def test_out_that_is_a_folder_or_under_a_file_is_one_line(src, tmp_path, cli):
    (tmp_path / "afolder").mkdir()
    for out in (tmp_path / "afolder", src / "x.jsonl"):
        rc, _, err = cli("select", src, "--out", out, "--budget", "3")
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["select", "score"])
def test_an_output_that_is_a_device_or_pipe_is_refused_not_replaced(src, tmp_path, cli, command):
    """`--out /dev/null` used to rename a temp file over the device (as root, /dev/null became a file)."""
    import stat

    from selector.core.io import _special

    assert _special(Path("/dev/null")) == "a device"  # the check itself, without touching /dev/null
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    extra = ("--budget", "2") if command == "select" else ("--metrics", "length")
    rc, _, err = cli(command, src, "--out", fifo, *extra)
    assert rc == 2 and "is a pipe, not a file" in err and len(err.strip().splitlines()) == 1, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not list(tmp_path.glob("fifo.*"))


@pytest.mark.parametrize("command", ["select", "score", "analyze"])
def test_an_output_that_is_a_records_image_is_refused(tmp_path, png, cli, command):
    """Images are inputs too: `--out img/0.png` used to replace the image record r0 is made of."""
    for i in range(3):
        png(tmp_path / "img" / f"{i}.png", size=(8 + i, 8))
    src = write_jsonl(tmp_path / "d.jsonl", [rec(i, image=f"img/{i}.png") for i in range(3)])
    target = tmp_path / "img" / "1.png"
    before = target.read_bytes()
    out = {"select": ("--out", target, "--budget", "1"), "score": ("--out", target),
           "analyze": ("--out", tmp_path / "img")}[command]
    if command == "analyze":  # its page is OUT/index.html: make that name a record's image
        target = tmp_path / "img" / "index.html"
        target.write_bytes(before)
        src = write_jsonl(tmp_path / "d.jsonl", [rec(i, image=f"img/{i}.png") for i in range(3)] +
                          [rec(9, image="img/index.html")])
        before = target.read_bytes()
    rc, _, err = cli(command, src, *out, "--workers", "0")
    assert rc == 2 and "an image of the input's records" in err and len(err.strip().splitlines()) == 1, err
    assert target.read_bytes() == before
