"""Every error a user can cause is one line, `mmselect CMD: error: ...`, exit code 2, no traceback, naming the flag or
the file. Each subcommand is run with several bad arguments through the CLI's single entry (`main`); none of these
runs trains a model (they fail before any work, or on the first file they read)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from selector.app.cli import COMMANDS, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-errors")
    data = d / "data.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "conversations": [
        {"from": "human", "value": f"question {i}"}, {"from": "gpt", "value": "answer " * (i + 1)}]}) + "\n"
        for i in range(6)))
    text = d / "notes.txt"
    text.write_text("not a table\n")
    folder = d / "folder"
    folder.mkdir()
    recipe = d / "bad-key.yaml"
    recipe.write_text("budget: 3\nbogus_flag: 1\n")
    bad_value = d / "bad-value.yaml"
    bad_value.write_text("budget: lots\n")
    previous = d / "previous-run"  # an --out that already holds a fine-tuning run
    previous.mkdir()
    (previous / "metrics.json").write_text("{}\n")
    not_yaml = d / "broken.yaml"
    not_yaml.write_text("budget: [1, 2\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    scores = d / "scores.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(6)], "length": [float(i) for i in range(6)]}), scores)
    return {"dir": d, "data": str(data), "scores": str(scores), "text": str(text), "folder": str(folder), "missing": str(d / "missing.jsonl"),
            "under_file": str(text / "out.jsonl"), "recipe": str(recipe), "bad_value": str(bad_value),
            "not_yaml": str(not_yaml), "out": str(d / "out.jsonl"), "previous": str(previous)}


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse exits itself
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_user_error(argv, capsys, *names: str):
    rc, err = run_cli(argv, capsys)
    command = next(a for a in argv if not a.startswith("-"))
    assert rc == 2, (argv, rc, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith(f"mmselect {command}: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_every_subcommand_is_covered_here():
    covered = {"select", "score", "analyze", "compare", "train-selector", "finetune", "prune", "condense", "onion",
               "demo", "demo-data", "demo-models"}
    assert set(COMMANDS.names()) == covered


SELECT_CASES = [
    (lambda f: [f["missing"], "--budget", "3", "--out", f["out"]], ["missing.jsonl"]),
    (lambda f: [f["data"], "--budget", "-3", "--out", f["out"]], ["--budget", "-3"]),
    (lambda f: [f["data"], "--budget", "1.5", "--out", f["out"]], ["--budget"]),
    (lambda f: [f["data"], "--budget", "many", "--out", f["out"]], ["--budget", "many"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["folder"]], ["--out", "is a folder"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["under_file"]], ["--out", "notes.txt"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--metrics", "length,nope"],
     ["--metrics", "'nope'", "length"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--scores", f["text"]], ["--scores", "notes.txt"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--scores", f["missing"]], ["--scores", "missing"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--weights", "1,2"], ["--weights", "1 metric"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--weights", "a,b"], ["--weights"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--seed", "-1"], ["--seed"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--batch-size", "0"], ["--batch-size"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--workers", "-2"], ["--workers"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--normalise", "zz"], ["--normalise"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--bogus"], ["--bogus"]),
    (lambda f: [f["data"], "--out", f["out"], "--config", f["recipe"]], ["bogus_flag", "budget", "weights"]),
    (lambda f: [f["data"], "--out", f["out"], "--config", f["bad_value"]], ["--config", "budget", "lots"]),
    (lambda f: [f["data"], "--out", f["out"], "--config", f["not_yaml"]], ["--config", "broken.yaml", "YAML"]),
    (lambda f: [f["data"], "--out", f["out"], "--config", f["missing"]], ["--config", "missing.jsonl"]),
    (lambda f: [f["data"], "--budget", "3", "--out", f["out"], "--report-dir", f["text"]], ["--report-dir", "notes.txt"]),
]
SELECT_CASES = [(lambda f, a=args: ["select", *a(f)], names) for args, names in SELECT_CASES]



SCORE_CASES = [
    (lambda f: [f["missing"], "--out", f["out"] + ".parquet"], ["missing.jsonl"]),
    (lambda f: [f["data"], "--out", f["folder"]], ["--out"]),
    (lambda f: [f["data"], "--out", f["out"] + ".parquet", "--metrics", "clip,bleu"], ["--metrics", "'bleu'"]),
    (lambda f: [f["data"], "--out", f["out"] + ".parquet", "--batch-size", "0"], ["--batch-size"]),
    (lambda f: [f["data"], "--out", f["out"] + ".parquet", "--num-processes", "0"], ["--num-processes"]),
    (lambda f: [f["data"], "--out", f["out"] + ".parquet", "--judge-prompt", f["missing"]], ["--judge-prompt"]),
    (lambda f: [f["data"], "--out", f["out"] + ".parquet", "--workers", "x"], ["--workers"]),
    (lambda f: [f["data"], "--out", f["out"] + ".parquet", "--num-processes", "2", "--no-cache"], ["--no-cache"]),
]
SCORE_CASES = [(lambda f, a=args: ["score", *a(f)], names) for args, names in SCORE_CASES]



def _train_selector(f, **over):
    flags = {"--data": f["data"], "--scores": None, "--eval-data": f["data"], "--base-model": "tiny",
             "--out": str(f["dir"] / "sel"), **over}
    return [x for k, v in flags.items() if v is not None for x in (k, v)]


TRAIN_SELECTOR_CASES = [
    (lambda f: _train_selector(f, **{"--scores": f["text"]}), ["--scores", "notes.txt", "Parquet"]),
    (lambda f: _train_selector(f, **{"--scores": f["missing"]}), ["--scores", "missing.jsonl"]),
    (lambda f: _train_selector(f, **{"--scores": f["scores"], "--data": f["missing"]}), ["--data", "missing.jsonl"]),
    (lambda f: _train_selector(f, **{"--scores": f["scores"], "--out": f["text"]}), ["--out", "notes.txt"]),
    (lambda f: _train_selector(f), ["--scores"]),  # required
]
TRAIN_SELECTOR_CASES = [(lambda f, a=args: ["train-selector", *a(f)], names) for args, names in TRAIN_SELECTOR_CASES]



def _finetune(f, *extra, model="nobody/no-such-vlm-xyz", out=None):
    return ["finetune", "--model", model, "--data", f["data"], "--out", out or str(f["dir"] / "ft"), *extra]


FINETUNE_CASES = [
    (lambda f: _finetune(f), ["no-such-vlm-xyz", "--model", "offline"]),
    (lambda f: _finetune(f, "--bf16"), ["--bf16", "CUDA"]),
    (lambda f: _finetune(f, "--fp16"), ["--fp16", "CUDA"]),
    (lambda f: _finetune(f, "--load-in-4bit"), ["--load-in-4bit", "CUDA"]),
    (lambda f: _finetune(f, "--resume", "--overwrite"), ["--resume", "--overwrite"]),
    (lambda f: _finetune(f, out=f["previous"]), ["previous-run", "metrics.json", "--resume", "--overwrite"]),
    (lambda f: _finetune(f, "--resume", out=f["previous"]), ["--resume", "no checkpoint", "--overwrite"]),
    (lambda f: _finetune(f, out=f["text"]), ["--out", "notes.txt"]),
    (lambda f: _finetune(f, "--epochs", "0"), ["epochs"]),
    (lambda f: _finetune(f, "--lr", "-1"), ["lr"]),
    (lambda f: _finetune(f, "--bf16", "--fp16"), ["--fp16", "--bf16"]),  # one precision flag at a time
]


def _prune(f, *extra, method="random", keep="0.5"):
    return ["prune", "--dataset", "digits", "--method", method, "--keep", keep, "--out", str(f["dir"] / "p.json"),
            *extra]


PRUNE_CASES = [
    (lambda f: _prune(f, method="nope"), ["--method", "'nope'", "herding"]),
    (lambda f: _prune(f, keep="0"), ["--keep"]),
    (lambda f: _prune(f, keep="abc"), ["--keep"]),
    (lambda f: _prune(f, "--width", "8"), ["--width", "random"]),
    (lambda f: _prune(f, "--epoch", "3", method="forgetting"), ["--epoch", "forgetting"]),
    (lambda f: _prune(f, "--net", "alexnet", method="el2n"), ["--net", "alexnet"]),
    (lambda f: _prune(f, "--seed", "-4"), ["--seed"]),
    (lambda f: _prune(f, "--out", f["folder"]), ["--out"]),
    (lambda f: ["prune", "--dataset", f"folder:{f['missing']}", "--method", "random", "--keep", "0.5", "--out",
                str(f["dir"] / "p.json")], ["missing.jsonl"]),
]



def _condense(f, *extra, method="dm", ipc="1"):
    return ["condense", "--method", method, "--ipc", ipc, "--out", str(f["dir"] / "c.pt"), *extra]


CONDENSE_CASES = [
    (lambda f: _condense(f, method="kip"), ["--method", "'kip'", "cafe"]),
    (lambda f: _condense(f, ipc="0"), ["--ipc"]),
    (lambda f: _condense(f, "--out", f["folder"]), ["--out"]),
    (lambda f: _condense(f, "--eval-net", "alexnet"), ["--eval-net", "alexnet", "resnet18"]),
    (lambda f: _condense(f, "--init", "magic"), ["--init", "magic", "kcenter"]),
    (lambda f: _condense(f, "--init-params", "[1]"), ["--init-params"]),
    (lambda f: _condense(f, "--dsa", "maybe"), ["--dsa"]),
    (lambda f: _condense(f, "--lr-img", "-1"), ["--lr-img"]),
]



ONION_CASES = [
    (lambda f: ["onion", "--out", f["text"]], ["--out", "notes.txt"]),
    (lambda f: ["onion", "--out", f["folder"], "--levels", "token,pixel"], ["--levels", "pixel"]),
    (lambda f: ["onion", "--out", f["folder"], "--keep-ratio", "2"], ["--keep-ratio"]),
    (lambda f: ["onion", "--out", f["folder"], "--patch", "0"], ["--patch"]),
    (lambda f: ["onion", "--out", f["folder"], "--split", "0.7", "0.2", "x"], ["--split"]),
    (lambda f: ["onion", "--out", f["folder"], "--optimizer", "lion"], ["--optimizer"]),
]



ANALYZE_CASES = [
    (lambda f: ["analyze", f["missing"], "--out", f["folder"]], ["missing.jsonl"]),
    (lambda f: ["analyze", f["data"], "--out", f["text"]], ["--out", "notes.txt"]),
    (lambda f: ["analyze", f["data"], "--out", f["folder"], "--scores", f["text"]], ["--scores", "notes.txt"]),
    (lambda f: ["analyze", f["data"], "--out", f["folder"], "--metrics", "length,nope"], ["--metrics", "'nope'"]),
    (lambda f: ["compare", f["data"], "--out", str(f["dir"] / "c")], ["at least two"]),
    (lambda f: ["compare", f["data"], f["missing"], "--out", str(f["dir"] / "c")], ["missing.jsonl"]),
    (lambda f: ["compare", f["data"], f["data"], "--out", str(f["dir"] / "c")], ["--pool"]),
    (lambda f: ["prune", "--dataset", "digits", "--method", "random", "--keep", "0.5", "--out",
                str(f["dir"] / "p.json"), "--subset-dir", str(f["dir"] / "t")], ["--subset-dir", "folder"]),
    (lambda f: ["prune", "--dataset", "digits", "--method", "random", "--keep", "0.5", "--out",
                str(f["dir"] / "p.json"), "--link", "hard"], ["--link"]),
]



DEMO_DATA_CASES = [
    (lambda f: ["demo-data", "--out", f["text"]], ["--out", "notes.txt"]),
    (lambda f: ["demo-data", "--out", f["folder"], "--n-train", "0"], ["--n-train"]),
    (lambda f: ["demo-data", "--out", f["folder"], "--n-test", "-5"], ["--n-test"]),
    (lambda f: ["demo-data", "--out", f["folder"], "--noise", "1.5"], ["--noise"]),
    (lambda f: ["demo-data", "--out", f["folder"], "--seed", "-1"], ["--seed"]),
    (lambda f: ["demo-data", "--out", f["folder"], "--image-size", "big"], ["--image-size"]),
]



DEMO_MODELS_CASES = [
    (lambda f: ["demo-models", "--data", f["missing"], "--out", f["folder"]], ["--data", "missing.jsonl"]),
    (lambda f: ["demo-models", "--data", f["folder"], "--out", str(f["dir"] / "m")], ["pretrain.jsonl"]),
    (lambda f: ["demo-models", "--data", f["folder"], "--out", f["text"]], ["--out", "notes.txt"]),
    (lambda f: ["demo-models", "--data", f["folder"], "--out", f["folder"], "--only", "gpt"], ["--only"]),
    (lambda f: ["demo-models", "--data", f["folder"], "--out", f["folder"], "--clip-epochs", "0"], ["--clip-epochs"]),
]



DEMO_CASES = [
    (lambda f: ["demo", "--cache", f["text"]], ["--cache", "notes.txt"]),
    (lambda f: ["demo", "--cache", f["folder"], "--budget", "0"], ["--budget"]),
    (lambda f: ["demo", "--cache", f["folder"], "--threads", "-1"], ["--threads"]),
    (lambda f: ["demo", "--cache", f["folder"], "--metrics", "length,nope"], ["--metrics", "'nope'"]),
    (lambda f: ["demo", "--cache", f["folder"], "--noise", "2"], ["--noise"]),
    (lambda f: ["demo", "--cache", f["folder"], "--label-seeds", "1,x"], ["--label-seeds"]),
    (lambda f: ["demo", "--cache", f["folder"], "--report", f["text"]], ["--report", "notes.txt"]),
]



CASES = [*SELECT_CASES, *SCORE_CASES, *ANALYZE_CASES, *TRAIN_SELECTOR_CASES, *FINETUNE_CASES, *PRUNE_CASES,
         *CONDENSE_CASES, *ONION_CASES, *DEMO_DATA_CASES, *DEMO_MODELS_CASES, *DEMO_CASES]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_bad_arguments_are_one_line_exit_2(files, capsys, case):
    argv, names = CASES[case]
    assert_user_error(argv(files), capsys, *names)
    assert not (files["dir"] / "out.jsonl").exists() and not (files["dir"] / "p.json").exists()


def test_an_unknown_subcommand_is_one_line(capsys):
    rc, err = run_cli(["frobnicate"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "frobnicate" in err and "select" in err


def test_a_user_error_from_the_console_script_has_no_traceback(files):
    """The same path end to end in a fresh interpreter, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "selector.app.cli", "select", files["data"], "--budget", "3",
                           "--out", files["out"], "--scores", files["text"]], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mmselect select: error: argument --scores: ") and "notes.txt" in proc.stderr


def test_a_bug_still_shows_its_traceback(monkeypatch, files):
    """Only user errors are turned into one line: an unexpected exception propagates (and prints its traceback)."""
    import selector.app.commands.demo_data as demo_data

    def broken(ns):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(demo_data, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["demo-data", "--out", files["folder"]])


def test_an_os_error_naming_a_file_is_a_user_error():
    from selector.app.cli import user_error

    assert user_error(FileNotFoundError(2, "No such file or directory", "/x/y")) == "/x/y: No such file or directory"
    assert user_error(OSError("no file named")) is None
    assert user_error(ValueError("bug")) is None
