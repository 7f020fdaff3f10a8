"""Promise: the selection, the rejected list and the report form one unit (the report is written last and names
the others' sha256; a run killed before it leaves no report), and every output follows the umask."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from tests.hardening.conftest import rec, write_jsonl


@pytest.fixture
def src(tmp_path):
    return write_jsonl(tmp_path / "in.jsonl", [rec(i) for i in range(10)] + [b"bad line"])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(src, tmp_path, cli, umask):
    old = os.umask(umask)
    try:
        rc, _, err = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "3")
        rc2, _, err2 = cli("score", src, "--out", tmp_path / "s.parquet", "--metrics", "length", "--no-cache")
    finally:
        os.umask(old)
    assert rc == 0 and rc2 == 0, err + err2
    for name in ("o.jsonl", "o.jsonl.rejected.jsonl", "o.jsonl.report.json", "s.parquet", "s.parquet.rejected.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_report_names_the_checksums_of_the_set(src, tmp_path, cli):
    rc, _, _ = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "3")
    assert rc == 0
    files = json.loads((tmp_path / "o.jsonl.report.json").read_text())["files"]
    for key, name in (("selection", "o.jsonl"), ("rejected", "o.jsonl.rejected.jsonl")):
        assert files[key]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_a_run_killed_between_the_files_leaves_no_report(src, tmp_path, cli, monkeypatch):
    import selector.app.pipeline as pipeline

    rc, _, _ = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "3")
    assert rc == 0 and (tmp_path / "o.jsonl.report.json").exists()

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_rejected", killed)
    rc, _, _ = cli("select", src, "--out", tmp_path / "o.jsonl", "--budget", "5")
    assert rc == 130
    assert not (tmp_path / "o.jsonl.report.json").exists()  # the old report no longer vouches for a mixed set
