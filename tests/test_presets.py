"""Run presets: fast fills only what the user left unset, paper changes nothing, the CLI says which it used."""
from __future__ import annotations

import json

from selector.app.cli import main
from vision.presets import apply, default_preset, describe, preset_settings


def test_apply_fills_unset_settings_and_respects_explicit_flags():
    settings, from_preset = apply("condense", "fast", {"width": 64, "iterations": None, "dsa": None}, method="dm")
    assert settings["width"] == 64 and settings["iterations"] == 100 and "width" not in from_preset
    assert "dsa" not in settings  # unset and not a preset setting: stays the method's default
    assert preset_settings("condense", "fast", "dc")["iterations"] == 20
    assert apply("prune", "paper", {"width": None, "epochs": 7}) == ({"epochs": 7}, {})
    _, limited = apply("prune", "fast", {}, accepted={"width"})
    assert limited == {"width": 32}  # a ranker without proxy epochs gets no epochs from the preset


def test_default_preset_follows_the_device_and_help_lists_fast_settings():
    assert default_preset("cpu") == "fast" and default_preset("cuda:1") == "paper"
    assert "iterations 100 (dm)" in describe("condense") and "width 32" in describe("prune")


def test_prune_cli_uses_fast_on_cpu_and_says_so(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["prune", "--dataset", "digits", "--method", "herding", "--features", "pixels", "--keep", "0.1",
                 "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "preset fast (CPU default): image-size 16, width 32, epochs 10" in captured.out
    assert "herding (preset fast): kept" in captured.out
    doc = json.loads(out.read_text())
    assert doc["preset"] == "fast" and doc["image_shape"] == [1, 16, 16]
    assert doc["settings"]["proxy"]["width"] == 32 and doc["settings"]["proxy"]["epochs"] == 10
    assert main(["prune", "--dataset", "digits", "--method", "herding", "--features", "pixels", "--keep", "0.1",
                 "--preset", "paper", "--image-size", "8", "--out", str(out)]) == 0
    assert "preset paper (chosen)" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["preset"] == "paper" and doc["image_shape"] == [1, 8, 8] and doc["settings"]["proxy"]["width"] == 128
