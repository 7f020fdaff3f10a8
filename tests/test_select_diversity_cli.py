"""`mmselect select --diversity / --semdedup / --coincide` and `mmselect prune --stratified` end to end."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.app.cli import main


@pytest.fixture
def pool(tmp_path):
    """60 text records; r0..r19 are near-copies in embedding space and have the longest answers."""
    from selector.core.io import SCORES_INPUT_KEY, input_fingerprint

    rows = []
    for i in range(60):
        answer = ("long answer " * 10 + str(i)) if i < 20 else f"answer {i} " + "x" * (i % 11)
        rows.append({"id": f"r{i}", "conversations": [{"from": "human", "value": f"question {i}"},
                                                      {"from": "gpt", "value": answer}]})
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(0)
    base = rng.normal(size=16)
    vecs = [base + 0.01 * rng.normal(size=16) if i < 20 else rng.normal(size=16) for i in range(60)]
    table = pa.table({"id": [r["id"] for r in rows],
                      "length": pa.array([float(len(r["conversations"][1]["value"])) for r in rows]),
                      "embed-text": pa.array([list(map(float, v)) for v in vecs], pa.list_(pa.float32()))})
    meta = {SCORES_INPUT_KEY: json.dumps(input_fingerprint(src)).encode()}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "s.parquet")
    return src, tmp_path / "s.parquet"


def _run(capsys, *args):
    rc = main(["-q", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _report(out):
    return json.loads(open(f"{out}.report.json").read())


def test_select_diversity_and_semdedup(pool, tmp_path, capsys):
    src, scores = pool
    out = tmp_path / "o.jsonl"
    common = ("select", src, "--budget", 20, "--metrics", "length", "--scores", scores, "--out", out)
    rc, _, _ = _run(capsys, *common)
    assert rc == 0 and sum(int(i[1:]) < 20 for i in _report(out)["selected_ids"]) == 20  # plain: all copies
    rc, text, err = _run(capsys, *common, "--diversity", "0.9", "--diversity-features", "embed-text")
    assert rc == 0, err
    report = _report(out)
    assert len(report["selected_ids"]) == 20 and sum(int(i[1:]) < 20 for i in report["selected_ids"]) == 1
    assert report["diversity"]["skipped"] >= 19 and report["settings"]["diversity"] == 0.9
    assert "diversity (threshold 0.9): skipped" in text and "selected 20, not selected 40" in text
    assert (tmp_path / "o.jsonl.map.png").stat().st_size > 1000
    assert sum(g["selected"] for g in report["composition_by_cluster"]["groups"]) == 20
    source = report["composition_by_source"]["groups"]
    assert [(g["group"], g["pool"], g["selected"]) for g in source] == [("(text only)", 60, 20)]
    rc, _, err = _run(capsys, "select", "--config", f"{out}.report.json", "--out", tmp_path / "again.jsonl")
    assert rc == 0, err  # the report replays the diversity run
    assert _report(tmp_path / "again.jsonl")["selected_ids"] == report["selected_ids"]
    rc, text, err = _run(capsys, *common, "--semdedup", "0.95", "--diversity-features", "embed-text")
    assert rc == 0, err
    report = _report(out)
    lost = report["semdedup"]["lost_to"]
    assert report["semdedup"]["removed"] == 19 and len(set(lost.values())) == 1 and len(report["selected_ids"]) == 20
    assert not set(lost) & set(report["selected_ids"]) and "removed 19 near-duplicates" in text


def test_select_coincide_exact_budget(pool, tmp_path, capsys):
    src, scores = pool
    out = tmp_path / "c.jsonl"
    rc, _, err = _run(capsys, "select", src, "--budget", 12, "--scores", scores, "--out", out, "--coincide",
                      "--diversity-features", "embed-text", "--clusters", 4)
    assert rc == 0, err
    report = _report(out)
    assert report["ranker"] == "coincide" and len(report["selected_ids"]) == 12
    assert report["composition_by_cluster"]["clusters"] == "coincide groups"
    assert all(g["selected"] >= 1 for g in report["composition_by_cluster"]["groups"])


@pytest.mark.parametrize("flags, message", [
    (("--diversity", "1.5"), "between -1 and 1"),
    (("--diversity", "0.9", "--diversity-features", "length"), "scalar score"),
    (("--semdedup", "0.9", "--diversity-features", "nosuch"), "unknown metric(s) nosuch"),
    (("--semdedup", "0.5", "--diversity-features", "embed-text"), "--allow-short"),
    (("--coincide", "--selector", "."), "choose one"),
])
def test_select_diversity_errors_are_one_line(pool, tmp_path, capsys, flags, message):
    src, scores = pool
    rc, _, err = _run(capsys, "select", src, "--budget", 50, "--metrics", "length", "--scores", scores,
                      "--out", tmp_path / "e.jsonl", *flags)
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_prune_stratified_cli(tmp_path, capsys):
    out = tmp_path / "p.json"
    rc, text, err = _run(capsys, "prune", "--dataset", "digits", "--image-size", "8", "--method", "random",
                         "--keep", "0.1", "--stratified", "--strata", "5", "--out", out)
    assert rc == 0, err
    doc = json.loads(out.read_text())
    assert doc["stratified"] == {"beta": 0.1, "beta_auto": True, "strata": 5, "within": "random"}
    assert len(doc["indices"]) == 180
    counts = np.bincount(np.array(doc["labels"])[doc["indices"]], minlength=10)
    assert counts.sum() == 180 and counts.min() >= 17
    rc, _, err = _run(capsys, "prune", "--dataset", "digits", "--method", "random", "--keep", "0.1",
                      "--hard-cut", "0.2", "--out", out)
    assert rc == 2 and "--stratified" in err
