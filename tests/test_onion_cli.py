"""`mmselect onion` end to end on digits, with levels switched on and off."""
from __future__ import annotations

import json

from selector.app.cli import main

TINY = ["--dataset", "digits", "--image-size", "16", "--dim", "24", "--depth", "2", "--epochs", "2",
        "--batch-size", "64", "--split", "0.15", "0.05", "0.8", "--swap-every", "1", "--max-swaps", "1", "--device", "cpu"]


def test_onion_cli_all_levels_writes_report_swaps_and_plot(tmp_path, capsys):
    out = tmp_path / "all"
    assert main(["-q", "onion", *TINY, "--keep-ratio", "0.7", "--attn-ratio", "0.3", "--example-drop", "0.2",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["levels"] == ["example", "token", "attention"]
    n = report["n_train"]
    assert report["images_processed"] == 2 * (n - round(0.2 * n))
    assert report["tokens_per_block"] == [[17, 17], [17, 14]]  # default prune block for depth 2: block 1; 1 + ceil(0.7 * 16) + 1 fused
    swaps = [json.loads(line) for line in (out / "swaps.jsonl").read_text().splitlines()]
    assert len(swaps) == 1 and swaps[0]["epoch"] == 1
    assert len(swaps[0]["removed"]) == len(swaps[0]["restored"]) == round(0.5 * round(0.2 * n))
    assert (out / "training.png").stat().st_size > 0
    assert "levels: example,token,attention" in capsys.readouterr().out


def test_onion_cli_levels_switch_and_bad_ratio(tmp_path, capsys):
    out = tmp_path / "token"
    assert main(["-q", "onion", *TINY, "--levels", "token", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["levels"] == ["token"]
    assert report["config"]["vit"]["attn_ratio"] == 1.0 and report["config"]["example"]["drop"] == 0.0
    assert report["swaps"] == [] and report["images_processed"] == 2 * report["n_train"]
    capsys.readouterr()
    assert main(["-q", "onion", *TINY, "--keep-ratio", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "keep_ratio must lie in (0, 1]" in capsys.readouterr().err
