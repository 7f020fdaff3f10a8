"""`--group-by`: each data source (a column, a JSON field, the_cauldron's nested `source`, or metric clusters) gets
a proportional quota >= 1 through the shared `select`; the report, stdout and a bar chart show the composition."""
from __future__ import annotations

import json

import pytest

from selector.core.ranking import group_quotas
from tests.fixtures.formats import cauldron_dataset, onevision_rows, write_onevision


def test_sources_get_proportional_quotas_and_the_report_shows_composition(tmp_path, cli):
    rows = onevision_rows(20)
    for i, r in enumerate(rows):  # 12 / 6 / 2 records; the small source has the longest answers
        r["data_source"] = "big" if i < 12 else "mid" if i < 18 else "small"
        r["conversations"][1]["value"] = ("long " * 50 if i >= 18 else "") + r["conversations"][1]["value"]
    write_onevision(tmp_path / "d.parquet", rows)
    out = tmp_path / "o.parquet"
    rc, stdout, err = cli("select", tmp_path / "d.parquet", "--out", out, "--budget", "6", "--group-by", "data_source")
    assert rc == 0, err
    report = json.loads((tmp_path / "o.parquet.report.json").read_text())
    comp = {g["group"]: g for g in report["composition"]["groups"]}
    want = group_quotas({"big": 12, "mid": 6, "small": 2}, 6)
    assert {k: v["selected"] for k, v in comp.items()} == want == {k: v["quota"] for k, v in comp.items()}
    assert comp["big"]["pool"] == 12 and comp["small"]["pool_share"] == pytest.approx(0.1)
    assert "data_source" in stdout and "big" in stdout and "selected" in stdout
    chart = tmp_path / "o.parquet.composition.png"
    assert chart.read_bytes()[:4] == b"\x89PNG" and report["files"]["composition_chart"]["path"] == str(chart)
    rc, _, _ = cli("select", tmp_path / "d.parquet", "--out", tmp_path / "plain.parquet", "--budget", "6")
    plain = json.loads((tmp_path / "plain.parquet.report.json").read_text())["selected_ids"]
    assert sum(i in {f"ov-{k}" for k in (18, 19)} for i in plain) == 2  # without quotas: the long answers win


def test_cauldron_source_jsonl_fields_and_unknown_columns(tmp_path, cli):
    cauldron_dataset(6).to_parquet(str(tmp_path / "c.parquet"))
    rc, stdout, err = cli("select", tmp_path / "c.parquet", "--out", tmp_path / "c-out.parquet", "--budget", "2",
                          "--group-by", "source")
    assert rc == 0, err
    groups = json.loads((tmp_path / "c-out.parquet.report.json").read_text())["composition"]["groups"]
    assert {g["group"]: g["selected"] for g in groups} == {"cauldron-0": 1, "cauldron-1": 1}
    lines = [json.dumps({"id": f"j{i}", "domain": ["math", "chat", None][i % 3],
                         "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a" * (i + 1)}]})
             for i in range(9)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    rc, _, err = cli("select", tmp_path / "d.jsonl", "--out", tmp_path / "o.jsonl", "--budget", "3", "--group-by", "domain")
    assert rc == 0, err
    kept = [json.loads(x)["id"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert kept == ["j6", "j7", "j8"]  # the longest answer of math, chat and the records without a domain
    rc, _, err = cli("select", tmp_path / "c.parquet", "--out", tmp_path / "x.parquet", "--budget", "2",
                     "--group-by", "nope")
    assert rc == 2 and "no such column" in err and len(err.strip().splitlines()) == 1


def test_cluster_groups_come_from_the_metric_scores(tmp_path, cli):
    lines = [json.dumps({"id": f"k{i}", "conversations": [{"from": "human", "value": "q"},
                                                           {"from": "gpt", "value": "a" * (5 + i % 3 * 40 + i)}]})
             for i in range(30)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    rc, _, err = cli("select", tmp_path / "d.jsonl", "--out", tmp_path / "o.jsonl", "--budget", "6",
                     "--group-by", "cluster:3")
    assert rc == 0, err
    groups = json.loads((tmp_path / "o.jsonl.report.json").read_text())["composition"]["groups"]
    assert len(groups) == 3 and all(g["selected"] >= 1 for g in groups) and sum(g["pool"] for g in groups) == 30
    rc, _, err = cli("select", tmp_path / "d.jsonl", "--out", tmp_path / "o.jsonl", "--budget", "6",
                     "--group-by", "cluster:1")
    assert rc == 2 and "cluster:K" in err
