"""Promise: an output given under another name (a symlink or a hard link to an input: an instruction file, a score
table, an image a record names, a file of an image dataset) is refused in one line before any work, for every
command that writes; and `--images` must be a folder."""
from __future__ import annotations

import os

import pytest

from tests.hardening.conftest import rec, write_jsonl


def _alias(target, link, how):
    (os.link if how == "hardlink" else os.symlink)(target, link)
    return link


@pytest.fixture
def pool(tmp_path, png):
    for i in range(3):
        png(tmp_path / "img" / f"{i}.png", size=(8 + i, 8))
    return write_jsonl(tmp_path / "d.jsonl", [rec(i, image=f"img/{i}.png") for i in range(3)])


def _one_line_refusal(rc, err, what):
    assert rc == 2 and what in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("how", ["hardlink", "symlink"])
@pytest.mark.parametrize("command", ["select", "score", "analyze"])
def test_an_image_under_another_name_is_refused(pool, tmp_path, cli, command, how):
    """The name check used to compare only image names ending in the output's own name: `--out result.jsonl`,
    a hard link (or a symlink) to img/1.png, was let through."""
    image = tmp_path / "img" / "1.png"
    before = image.read_bytes()
    if command == "analyze":  # its page is OUT/index.html
        (tmp_path / "page").mkdir()
        _alias(image, tmp_path / "page" / "index.html", how)
        args = ("--out", tmp_path / "page")
    else:
        out = _alias(image, tmp_path / ("result.parquet" if command == "score" else "result.jsonl"), how)
        args = ("--out", out) + (("--budget", "1") if command == "select" else ())
    rc, _, err = cli(command, pool, *args, "--workers", "0")
    _one_line_refusal(rc, err, "an image of the input's records")
    assert image.read_bytes() == before and os.path.islink(tmp_path / "img" / "1.png") is False


def test_a_score_table_under_another_name_is_refused(pool, tmp_path, cli):
    assert cli("score", pool, "--out", tmp_path / "s.parquet", "--metrics", "length", "--workers", "0")[0] == 0
    out = _alias(tmp_path / "s.parquet", tmp_path / "picked.jsonl", "hardlink")
    rc, _, err = cli("select", pool, "--out", out, "--budget", "1", "--scores", tmp_path / "s.parquet")
    _one_line_refusal(rc, err, "would overwrite the input")


@pytest.mark.parametrize("command", ["prune", "condense", "onion"])
def test_image_dataset_commands_never_overwrite_a_dataset_file(folder_dataset, tmp_path, cli, command):
    victim = folder_dataset / "b" / "2.png"
    before = victim.read_bytes()
    spec = f"folder:{folder_dataset}"
    if command == "onion":
        (tmp_path / "run").mkdir()
        _alias(victim, tmp_path / "run" / "training.png", "symlink")
        args = ("--dataset", spec, "--out", tmp_path / "run", "--epochs", "1")
    else:
        out = _alias(victim, tmp_path / ("kept.json" if command == "prune" else "synth.pt"), "hardlink")
        args = (("--dataset", spec, "--out", out, "--method", "random", "--keep", "0.5") if command == "prune" else
                ("--dataset", spec, "--out", out, "--method", "dm", "--ipc", "1"))
    rc, _, err = cli(command, *args)
    _one_line_refusal(rc, err, "would overwrite the input")
    assert victim.read_bytes() == before


def test_train_selector_refuses_an_out_folder_that_holds_its_input(pool, tmp_path, cli):
    assert cli("score", pool, "--out", tmp_path / "s.parquet", "--metrics", "length", "--workers", "0")[0] == 0
    rc, _, err = cli("train-selector", "--data", pool, "--scores", tmp_path / "s.parquet", "--eval-data", pool,
                     "--base-model", "none", "--out", tmp_path)
    _one_line_refusal(rc, err, "holds the input")
    assert not (tmp_path / "labels.json").exists()


@pytest.mark.parametrize("command", ["select", "score", "analyze"])
def test_images_that_is_a_file_is_one_line_with_a_hint(pool, tmp_path, cli, command):
    out = {"select": ("--out", tmp_path / "o.jsonl", "--budget", "1"), "score": ("--out", tmp_path / "s.parquet"),
           "analyze": ("--out", tmp_path / "page")}[command]
    rc, _, err = cli(command, pool, *out, "--images", tmp_path / "img" / "0.png")
    _one_line_refusal(rc, err, "is a file, expected a folder")
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "s.parquet").exists()



def test_an_export_images_folder_that_is_a_file_is_refused_before_writing(tmp_path, cli):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def png(i):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(buf, "PNG")
        return {"bytes": buf.getvalue(), "path": None}

    conv = [[{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": f"answer {i}"}] for i in range(3)]
    pq.write_table(pa.table({"id": ["a", "b", "c"], "image": [png(i) for i in range(3)], "conversations": conv}),
                   tmp_path / "emb.parquet")
    (tmp_path / "o_images").write_text("a file of the user's")
    rc, _, err = cli("select", tmp_path / "emb.parquet", "--out", tmp_path / "o.jsonl", "--out-format", "llava-jsonl",
                     "--budget", "2")
    _one_line_refusal(rc, err, "is not a folder")
    assert (tmp_path / "o_images").read_text() == "a file of the user's" and not (tmp_path / "o.jsonl").exists()
