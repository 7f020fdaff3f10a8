"""The demo report: plots and Markdown from a synthetic run (no models)."""
from __future__ import annotations

import numpy as np
import pytest
import pyarrow as pa

from selector.learned.labels import LabelResult
from selector.learned.network import TrainHistory
from selector.core.ranking import Ranking, select


def test_report_writes_markdown_and_plots(tmp_path):
    from selector.app.demo.report import format_table
    from selector.app.demo.report import write_report

    rng = np.random.default_rng(0)
    n = 120
    ids = [f"t{i}" for i in range(n)]
    clean = rng.random(n) < 0.6
    table = pa.table({"id": ids, "clip": 20 + 5 * clean + rng.normal(0, 1, n), "length": rng.normal(50, 5, n),
                      "clip__reason": pa.array([None] * n, pa.string())})
    truth = {i: {"clean": bool(c)} for i, c in zip(ids, clean)}
    groups = rng.integers(0, 4, n)
    r = Ranking(np.array(ids, dtype=object), table.column("clip").to_numpy(), groups)
    selections = {"learned": select(r, 20), "random": select(Ranking(np.array(ids, dtype=object), rng.random(n)), 20)}
    results = [{"name": "selected-200 (learned)", "n": 20, "clean": 1.0, "exact_match": 0.8, "contains": 0.9},
               {"name": "random-200", "n": 20, "clean": 0.6, "exact_match": 0.6, "contains": 0.7},
               {"name": "metric:length", "n": 20, "clean": 0.55}]
    labels = LabelResult(np.array([[0.5, 0.5], [0.6, 0.62], [0.7, 0.69]]), (0, 1))
    hist = TrainHistory(train_loss=[1.0, 0.5, 0.4], val_loss=[1.0, 0.6, 0.7], best_epoch=1, best_val_loss=0.6)
    report = write_report(tmp_path / "rep", results=results, table=table, truth=truth, selections=selections,
                          groups=groups, labels=labels, history=hist, timings={"x": 1.0}, config={"seed": 0})
    text = report.read_text()
    for png in ["accuracy.png", "metric-distributions.png", "cluster-shares.png", "selector-training.png"]:
        assert (tmp_path / "rep" / png).stat().st_size > 1000
        assert f"({png})" in text
    assert "selected-200 (learned)" in text and "80.0" in text
    table_text = format_table(results)
    assert table_text.splitlines()[3].split()[-1] == "-"  # not fine-tuned: no accuracy, shown as "-"
    # settings are a table of native values; each figure has a sentence under it; one seed: no error bars
    assert "| seed | 0 |" in text
    assert text.count("![") == 4 and "one seed per bar, so no error bars" in text
    assert "scores below" not in text  # the learned bar is the best subset here


def test_accuracy_error_bars_and_the_note_when_learned_loses(tmp_path):
    """Rows with several seeds are drawn as mean +- std; the caption says when the learned selection loses."""
    from selector.app.demo.report import accuracy_caption, accuracy_values, plot_accuracy, settings_table

    results = [{"name": "selected-200 (learned)", "n": 200, "exact_match": 0.5, "exact_match_seeds": [0.5, 0.6, 0.4]},
               {"name": "linear baseline 200", "n": 200, "exact_match": 0.55, "exact_match_seeds": [0.55, 0.5, 0.6]},
               {"name": "full pool", "n": 1000, "exact_match": 0.9}]
    assert accuracy_values(results[0], "exact_match").std(ddof=1) == pytest.approx(10.0)
    caption = accuracy_caption(results)
    assert "mean of 3 seeds" in caption and "learned selection (50.0) scores below linear baseline 200 (55.0)" in caption
    assert plot_accuracy(results, tmp_path / "acc.png").stat().st_size > 1000
    assert settings_table({"metrics": ("length", "clip"), "lr": None, "noise": 0.4}) == [
        "| setting | value |", "|---|---|", "| metrics | length, clip |", "| lr | default |", "| noise | 0.4 |"]
