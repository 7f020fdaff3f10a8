"""Promise: a user's mistake ends in one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import pytest

from tests.hardening.conftest import rec, write_jsonl


@pytest.fixture
def src(tmp_path):
    return write_jsonl(tmp_path / "in.jsonl", [rec(i) for i in range(10)])


@pytest.mark.parametrize("extra", [
    ["--metrics", "nosuchmetric"],
    ["--metrics", "length", "--weights", "1,2"],
    ["--metrics", "length", "--weights", "nan"],
    ["--seed", "-1"],
    ["--batch-size", "0"],
    ["--workers", "-3"],
    ["--budget", "-5"],
    ["--budget", "1.5"],
    ["--scores", "/nonexistent/scores.parquet"],
    ["--images", "/nonexistent/images"],
])
def test_select_bad_arguments(src, tmp_path, cli, extra):
    args = ["select", src, "--out", tmp_path / "o.jsonl"]
    if "--budget" not in extra:
        args += ["--budget", "3"]
    rc, _, err = cli(*args, *extra)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.jsonl").exists()


def test_scores_that_are_not_parquet(src, tmp_path, cli):
    (tmp_path / "s.parquet").write_text("not parquet")
    rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "3", "--scores", tmp_path / "s.parquet")
    assert rc == 2 and "not a Parquet" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra", [["--metrics", "bogus"], ["--batch-size", "0"], ["--num-processes", "0"]])
def test_score_bad_arguments(src, tmp_path, cli, extra):
    rc, _, err = cli("score", src, "--out", tmp_path / "s.parquet", "--no-cache", *extra)
    assert rc == 2 and len(err.strip().splitlines()) == 1


def test_input_errors(tmp_path, cli):
    (tmp_path / "bin.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    for bad in (tmp_path / "missing.jsonl", tmp_path / "bin.jsonl", tmp_path):
        rc, _, err = cli("select", bad, "--out", tmp_path / "o.jsonl", "--budget", "1")
        assert rc == 2 and len(err.strip().splitlines()) == 1, err


def test_score_judge_when_every_record_is_rejected(tmp_path, cli):
    """A wrong --images rejects every image record; with --allow-rejects the judge scores nothing, no AttributeError."""
    from tests.fixtures.fake_judge_server import FakeJudge

    src = write_jsonl(tmp_path / "in.jsonl", [rec(i, image=f"img{i}.png") for i in range(4)])
    with FakeJudge() as judge:
        rc, _, err = cli("score", src, "--out", tmp_path / "s.parquet", "--metrics", "judge", "--judge-url", judge.url,
                         "--judge-model", "m", "--judge-images", "--images", tmp_path / "nowhere", "--no-cache")
        assert rc == 2 and "--images" in err  # the guardrail names the likely cause
        rc, out, err = cli("score", src, "--out", tmp_path / "s.parquet", "--metrics", "judge", "--judge-url",
                           judge.url, "--judge-model", "m", "--judge-images", "--images", tmp_path, "--no-cache",
                           "--allow-rejects")
    assert rc == 0 and "scored 0 records" in out, err
    assert (tmp_path / "s.parquet.rejected.jsonl").read_text().count("\n") == 4
