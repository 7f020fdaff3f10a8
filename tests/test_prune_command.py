"""`mmselect prune` end to end on digits: the subset file, its settings, and clean errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from selector.app.cli import main
from selector.core.ranking import Ranking, select


def test_prune_cli_writes_subset(tmp_path, capsys):
    out = tmp_path / "subset.json"
    rc = main(["prune", "--dataset", "digits", "--image-size", "8", "--method", "herding", "--features", "pixels",
               "--keep", "0.2", "--seed", "3", "--out", str(out)])
    assert rc == 0
    assert "kept 359 of 1797" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["method"] == "herding" and doc["budget"] == 359 and len(doc["indices"]) == 359
    assert doc["settings"]["features"] == "pixels" and doc["settings"]["per_class"] is True
    assert len(doc["scores"]) == len(doc["labels"]) == 1797
    # the file carries enough to re-cut another budget without rescoring
    ranking = Ranking(np.arange(1797), np.array(doc["scores"], float), np.array(doc["labels"]), "herding")
    assert select(ranking, 0.2, seed=3).indices.tolist() == doc["indices"]
    counts = np.bincount(np.array(doc["labels"])[doc["indices"]], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_prune_cli_errors_are_clean(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["prune", "--dataset", "digits", "--method", "random", "--keep", "0.5", "--width", "8",
                 "--out", str(out)]) == 2
    assert main(["prune", "--dataset", f"folder:{tmp_path / 'none'}", "--method", "random", "--keep", "0.5",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not use --width" in err and "does not exist" in err
    assert not out.exists()
