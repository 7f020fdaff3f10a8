"""`mmselect analyze`, `select --report` and `mmselect compare`: the numbers on each page (its JSON block and its
visible tables) are checked against the data they were computed from."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.app.report import stats
from selector.app.report.html import read_data

N = 40


def _record(i: int) -> dict:
    # answers of distinct lengths (r7 the shortest, then by (i * 7) % N), a source field, an image on most records
    length = 3 + (i * 7) % N
    r = {"id": f"r{i}", "source": "coco" if i % 3 else "vg",
         "conversations": [{"from": "human", "value": f"<image>\nquestion {i}"},
                           {"from": "gpt", "value": "a" * length}]}
    if i % 4:
        r["image"] = f"img/{i}.png"
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """40 records (2 more rejected: a missing image, a repeated id) with 8x8 images, and a score table whose
    `judge` column has nulls with reasons."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pool")
    (root / "img").mkdir()
    rows = [_record(i) for i in range(N)]
    for r in rows:
        if "image" in r:
            Image.new("RGB", (8, 8), (int(r["id"][1:]) * 6, 40, 90)).save(root / r["image"])
    bad = [{**_record(100), "image": "img/none.png"}, {**_record(3), "source": "again"}]
    src = root / "data.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows + bad))
    rng = np.random.default_rng(0)
    quality = rng.normal(size=N)
    quality[[5, 9]] = np.nan
    reasons = [("judge timed out" if i in (5, 9) else None) for i in range(N)]
    scores = root / "scores.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "judge": pa.array(quality, from_pandas=True),
                             "judge__reason": pa.array(reasons, pa.string())}), scores)
    return {"root": root, "src": src, "rows": rows, "scores": scores, "judge": quality}


def _run(*args) -> None:
    from selector.app.cli import main

    assert main(["-q", *map(str, args)]) == 0


def _page(folder: Path) -> tuple[str, dict]:
    text = (folder / "index.html").read_text()
    return text, read_data(text)


def _cell(text: str, table_id: str, label: str) -> str:
    """The cell after `label` in the HTML table `table_id` (what a person reads on the page)."""
    table = re.search(rf'<table class="t" id="{table_id}">(.*?)</table>', text, re.S).group(1)
    return re.search(rf"<td>{re.escape(label)}</td><td[^>]*>([^<]*)</td>", table).group(1)


def test_stats_match_their_definitions():
    """Ranks, Spearman and extremes against scipy / a plain sort, ties and NaN included."""
    from scipy.stats import rankdata, spearmanr

    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 200).astype(float)
    b = a + rng.normal(size=200)
    a[[3, 7]] = np.nan
    ok = np.isfinite(a)
    assert np.allclose(stats.ranks(a)[ok], rankdata(a[ok]))
    m = stats.spearman_matrix({"a": a, "b": b})
    assert m[0, 1] == pytest.approx(spearmanr(a[ok], b[ok]).statistic)
    low, high = stats.extremes(a, 4)
    finite = np.flatnonzero(ok)
    assert list(low) == list(finite[np.lexsort((finite, a[finite]))][:4])
    assert list(high) == list(finite[np.lexsort((finite, -a[finite]))][:4])
    assert stats.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5


def test_analyze_page_numbers(data, tmp_path):
    _run("analyze", data["src"], "--scores", data["scores"], "--metrics", "length,judge", "--workers", "1",
         "--out", tmp_path / "rep")
    text, d = _page(tmp_path / "rep")
    assert d["counts"] == {"read": N + 2, "valid": N, "rejected": 2}
    assert _cell(text, "counts", "valid") == f"{N:,}"
    assert d["rejected_by_reason"] == {"duplicate id": 1, "image file missing": 1}
    lengths = np.array([len(r["conversations"][1]["value"]) for r in data["rows"]])
    assert d["extremes"]["length"]["lowest"][0] == data["rows"][int(np.argmin(lengths))]["id"] == "r0"
    assert d["extremes"]["length"]["highest"][0] == data["rows"][int(np.argmax(lengths))]["id"]
    q = data["judge"]
    assert d["extremes"]["judge"]["lowest"][0] == f"r{int(np.nanargmin(q))}"
    assert len(d["extremes"]["judge"]["lowest"]) == stats.EXTREMES
    summary = d["metrics"]["judge"]["summary"]
    assert summary["missing"] == 2 and summary["reasons"] == {"judge timed out": 2}
    assert summary["mean"] == pytest.approx(np.nanmean(q))
    assert sum(d["metrics"]["length"]["histograms"]["pool"]) == N
    source = d["composition"]["record field 'source'"]["pool"]
    assert source == {"coco": sum(1 for r in data["rows"] if r["source"] == "coco"),
                      "vg": sum(1 for r in data["rows"] if r["source"] == "vg")}
    assert set(d["correlation"]["metrics"]) == {"length", "judge"}
    # the record with the longest answer (r17, which has an image) is on the page as a card, with its thumbnail
    top = d["extremes"]["length"]["highest"][0]
    card = re.search(rf'<div class="card" data-id="{top}">(.*?)</table></div>', text, re.S).group(1)
    assert top == "r17" and "data:image/png;base64," in card and "a" * 42 in card


def test_select_report_page(data, tmp_path):
    out = tmp_path / "sel.jsonl"
    _run("select", data["src"], "--budget", "10", "--metrics", "length", "--workers", "1", "--out", out, "--report")
    text, d = _page(tmp_path / "sel.jsonl.report")
    chosen = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(d["selection"]["ids"]) == sorted(chosen) and d["selection"]["size"] == 10
    assert d["counts"]["selected:selection"] == 10 and _cell(text, "counts", "selected by selection") == "10"
    # ranked by answer length: the 10 longest are in, the next 12 are the just-missed, best first
    by_length = sorted(data["rows"], key=lambda r: -len(r["conversations"][1]["value"]))
    assert set(chosen) == {r["id"] for r in by_length[:10]}
    assert d["cut"]["just_missed"] == [r["id"] for r in by_length[10:22]]  # CUT_CARDS of them
    assert d["cut"]["best_selected"][0] == by_length[0]["id"]
    assert d["extremes"]["length"]["lowest"][0] == "r0"
    h = d["metrics"]["length"]["histograms"]
    assert sum(h["pool"]) == N and sum(h["selection"]) == 10
    comp = d["composition"]["images per record"]
    assert sum(comp["selection"].values()) == 10 and sum(comp["pool"].values()) == N


def test_compare_page_numbers(data, tmp_path, capsys):
    a, b = tmp_path / "by-length.jsonl", tmp_path / "by-judge.jsonl"
    _run("select", data["src"], "--budget", "12", "--metrics", "length", "--workers", "1", "--out", a)
    _run("select", data["src"], "--budget", "12", "--metrics", "judge", "--scores", data["scores"],
         "--missing", "worst", "--workers", "1", "--out", b)
    _run("compare", a, b, "--scores", data["scores"], "--workers", "1", "--out", tmp_path / "cmp")
    text, d = _page(tmp_path / "cmp")
    ids_a = {json.loads(line)["id"] for line in a.read_text().splitlines()}
    ids_b = {json.loads(line)["id"] for line in b.read_text().splitlines()}
    o = d["overlap"]["by-length.jsonl|by-judge.jsonl"]
    assert o["both"] == len(ids_a & ids_b) and o["only_first"] == len(ids_a - ids_b)
    assert o["jaccard"] == pytest.approx(len(ids_a & ids_b) / len(ids_a | ids_b))
    assert set(d["only"]["by-length.jsonl|by-judge.jsonl"]) == ids_a - ids_b
    assert set(d["only"]["by-judge.jsonl|by-length.jsonl"]) == ids_b - ids_a
    assert f"<td class=\"n\">{o['jaccard']:.4g}</td>" in text
    assert d["selections"]["by-length.jsonl"]["size"] == 12
    assert d["extremes"]["judge"]["lowest"][0] == f"r{int(np.nanargmin(data['judge']))}"
    assert sum(d["metrics"]["judge"]["histograms"]["by-judge.jsonl"]) == 12


def test_compare_refuses_selections_of_other_pools(data, tmp_path, capsys):
    from selector.app.cli import main

    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({**_record(i), "image": None} | {"id": f"o{i}"}) + "\n"
                             for i in range(5)).replace('"image": null, ', ""))
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _run("select", data["src"], "--budget", "3", "--workers", "1", "--out", a)
    _run("select", other, "--budget", "3", "--workers", "1", "--out", b)
    capsys.readouterr()
    assert main(["-q", "compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different pools" in err


@pytest.mark.parametrize("kind", ["parquet", "webdataset"])
def test_analyze_and_report_read_table_and_tar_inputs(kind, tmp_path):
    """Records without JSON source text (Parquet rows, tar samples) get the same page: counts and the shortest
    answer's id are right; `--annotate` on them is one line, not a crash."""
    from tests.fixtures.formats import onevision_rows, write_onevision, write_shards

    if kind == "parquet":
        rows = onevision_rows(12)
        src = write_onevision(tmp_path / "ov.parquet", rows)
    else:
        src = tmp_path / "shards"
        write_shards(src)
    _run("analyze", src, "--metrics", "length", "--workers", "1", "--out", tmp_path / "rep")
    _, d = _page(tmp_path / "rep")
    assert d["counts"] == {"read": 12, "valid": 12, "rejected": 0}
    lowest = d["extremes"]["length"]["lowest"][0]
    if kind == "parquet":
        answers = {r["id"]: len(r["conversations"][1]["value"]) for r in rows}
        assert answers[lowest] == min(answers.values())
    from selector.app.cli import main

    code = main(["select", str(src), "--metrics", "length", "--budget", "3", "--annotate",
                 "--out", str(tmp_path / "sel.out")])
    assert code == 2 and not (tmp_path / "sel.out").exists()
