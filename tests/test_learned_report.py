"""The demo report: plots and Markdown from a synthetic run (no models)."""
from __future__ import annotations

import numpy as np
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
