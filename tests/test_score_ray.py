"""`mmselect score --engine ray`: a 2-CPU Ray started inside the tests (127.0.0.1 only, always shut down) gives the
local engine's table and rejections, writes shards plus a manifest that `select --scores DIR` reads, and resumes a
killed run without recomputing its finished shards."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from metrics.score_job import ScoreJob, run_score_job  # noqa: E402
from selector.core.scores import read_manifest, read_score_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # Ray start-up alone takes seconds; make test-cluster


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU Ray on this machine for the module's tests; its workers import this checkout."""
    from metrics.ray_engine import start_local_ray

    start_local_ray(num_cpus=2, env={"OMP_NUM_THREADS": "1"})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from tests.fixtures.tiny_models import build_tiny_open_clip

    return build_tiny_open_clip(tmp_path_factory.mktemp("oc") / "clip")


@pytest.fixture(scope="module")
def vqa2000(tmp_path_factory):
    """2,000 DigitsVQA training records plus one corrupt and one missing image (rejections to compare)."""
    from selector.app.demo.data import DigitsVQAConfig, build_digits_vqa

    root = tmp_path_factory.mktemp("vqa2000")
    build_digits_vqa(root, DigitsVQAConfig(n_train=2000, n_pretrain=10, n_val=10, n_test=10))
    lines = (root / "train.jsonl").read_text().splitlines()
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    for at, rid, image in ((700, "bad-corrupt", "images/corrupt.png"), (1500, "bad-missing", "images/gone.png")):
        rec = json.loads(lines[at])
        rec.update(id=rid, image=image)
        lines.insert(at, json.dumps(rec))
    (root / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _job(data: Path, root: Path, out: Path, clip: Path, engine: str, **ray_options) -> ScoreJob:
    return ScoreJob(input=str(data), out=str(out), metrics=("length", "clip"),
                    params={"clip": {"model": f"local-dir:{clip}"}}, images=str(root), batch_size=32, workers=0,
                    progress=False, engine=engine, ray=ray_options)


def test_ray_engine_equals_local_engine_on_2000_records(local_ray, vqa2000, tiny_clip, tmp_path):
    from metrics.ray_engine import run_ray_job

    data = vqa2000 / "mixed.jsonl"
    local = run_score_job(_job(data, vqa2000, tmp_path / "local.parquet", tiny_clip, "local"))
    sharded = run_ray_job(_job(data, vqa2000, tmp_path / "ray", tiny_clip, "ray", shard_records=600))
    a, b = local.table, read_score_dir(tmp_path / "ray")
    assert a.num_rows > 1800 and b.column("id").to_pylist() == a.column("id").to_pylist()
    assert b.column("length").to_pylist() == a.column("length").to_pylist()
    np.testing.assert_allclose(b.column("clip").to_numpy(), a.column("clip").to_numpy(), rtol=0, atol=1e-5)
    assert sorted(b.column_names) == sorted(a.column_names)
    # the same rejections with the same reasons, image ones included (found by the shards' decode)
    rejected_local = (tmp_path / "local.parquet.rejected.jsonl").read_text()
    rejected_ray = (tmp_path / "ray" / "scores.rejected.jsonl").read_text()
    assert rejected_ray == rejected_local
    assert "image truncated or corrupt" in rejected_ray or "not an image" in rejected_ray
    assert "image file missing: images/gone.png" in rejected_ray
    manifest = read_manifest(tmp_path / "ray")
    assert manifest["complete"] and manifest["total_shards"] == 4 and len(list((tmp_path / "ray").glob("shards/*")))
    meta_a = json.loads(a.schema.metadata[b"mmselect.metrics"])
    meta_b = json.loads(b.schema.metadata[b"mmselect.metrics"])
    assert meta_b["clip"]["stats"] == meta_a["clip"]["stats"] and meta_b["clip"]["hash"] == meta_a["clip"]["hash"]
    assert sharded.read == local.read and sharded.rejected == local.rejected
    assert "4 shards" in sharded.summary and "records/s" in sharded.summary
    assert "input read by 4 tasks" in sharded.summary  # a JSONL file: each shard parsed by one task, not the driver


def _score_cli(args, **kw):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "selector.app.cli", "score", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_killed_ray_run_resumes_without_recomputing_finished_shards(local_ray, vqa2000, tiny_clip, tmp_path, cli):
    data = tmp_path / "part.jsonl"
    data.write_text("\n".join((vqa2000 / "mixed.jsonl").read_text().splitlines()[:400]) + "\n")
    out = tmp_path / "ray"
    args = [data, "--images", vqa2000, "--metrics", "length,clip", "--clip-model", f"local-dir:{tiny_clip}",
            "--engine", "ray", "--ray-address", local_ray, "--ray-actors", 1, "--shard-records", 50,
            "--batch-size", 16, "--out", out]
    proc = _score_cli(args, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(list(out.glob("shards/*.parquet"))) < 2:
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its session: a killed run, not a clean stop
    proc.communicate(timeout=60)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shards/*.parquet")}
    assert before, "no shard finished before the kill"

    rc, _, err = cli("score", *args[:-2], "--out", out)  # the same run again, in this process (its Ray reused)
    assert rc == 0, err
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shards/*.parquet")}
    assert len(after) == 8
    assert all(after[name] == mtime for name, mtime in before.items())  # finished shards were not rewritten
    manifest = read_manifest(out)
    reused = {Path(s["file"]).name for s in manifest["shards"] if s["reused"]}
    assert reused == set(before) and manifest["complete"]
    assert killed or len(before) == 8  # (a run that finished before the kill makes the resume trivially exact)

    clean = tmp_path / "clean"
    rc, _, err = cli("score", *args[:-2], "--out", clean)
    assert rc == 0, err
    a, b = read_score_dir(clean), read_score_dir(out)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    np.testing.assert_allclose(a.column("clip").to_numpy(), b.column("clip").to_numpy(), rtol=0, atol=1e-5)
    assert (clean / "scores.rejected.jsonl").read_text() == (out / "scores.rejected.jsonl").read_text()


def test_select_reads_the_sharded_scores_folder(local_ray, vqa2000, tiny_clip, tmp_path, cli):
    data = tmp_path / "part.jsonl"
    data.write_text("\n".join((vqa2000 / "mixed.jsonl").read_text().splitlines()[:120]) + "\n")
    out = tmp_path / "ray"
    rc, _, err = cli("score", data, "--images", vqa2000, "--metrics", "length", "--engine", "ray",
                     "--shard-records", 40, "--out", out)
    assert rc == 0, err
    table = read_score_dir(out)
    length = dict(zip(table.column("id").to_pylist(), table.column("length").to_pylist()))
    tenth = sorted(length.values(), reverse=True)[9]
    sel = tmp_path / "sel.jsonl"
    rc, _, err = cli("select", data, "--images", vqa2000, "--metrics", "length", "--scores", out, "--budget", 10,
                     "--out", sel)
    assert rc == 0, err
    chosen = {json.loads(line)["id"] for line in sel.read_text().splitlines()}
    assert len(chosen) == 10 and all(length[i] >= tenth for i in chosen)
    assert pq.read_schema(out / "shards" / "shard-000000.parquet").metadata[b"mmselect.shard"]


def test_judge_concurrency_is_one_limit_across_all_ray_actors(local_ray, tmp_path, cli):
    """2 actors with --judge-concurrency 2: the judge server never sees more than 2 requests at once. Each request
    takes 0.3 s and each actor scores 6-record batches with 2 threads, so a limit per actor would show 4."""
    from tests.fixtures.fake_judge_server import FakeJudge

    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i:02d}", "conversations": [
        {"from": "human", "value": f"Say {i}."}, {"from": "gpt", "value": f"{i} (case:ok-{i})"}]}) + "\n"
        for i in range(24)))
    out = tmp_path / "ray"
    with FakeJudge(latency_s=0.3) as judge:
        rc, _, err = cli("score", data, "--metrics", "judge", "--judge-url", judge.url, "--judge-model", "fake",
                         "--judge-concurrency", 2, "--engine", "ray", "--ray-actors", 2, "--shard-records", 6,
                         "--batch-size", 6, "--no-cache", "--out", out)
    assert rc == 0, err
    assert judge.requests == 24 and judge.max_in_flight == 2
    table = read_score_dir(out)
    assert dict(zip(table.column("id").to_pylist(), table.column("judge").to_pylist())) == \
        {f"r{i:02d}": float(i) for i in range(24)}
    busy = {s["file"] for s in read_manifest(out)["shards"]}
    assert len(busy) == 4


def test_ray_engine_reads_parquet_row_groups_in_tasks_and_equals_local(local_ray, tiny_clip, tmp_path):
    """Parquet with embedded images (one truncated, one repeated row): read by one task per row group, in shards
    of 5 rows; the same table and rejections as the local engine."""
    from metrics.ray_engine import run_ray_job
    from tests.fixtures.formats import onevision_rows, truncated_png, write_onevision

    rows = onevision_rows(40)
    rows[6]["image"] = {"bytes": truncated_png(), "path": "bad.png"}
    rows[30] = {**rows[3], "id": "copy-of-ov-3"}
    data = write_onevision(tmp_path / "ov.parquet", rows, row_group_size=16)
    # batch size 1: this tiny CLIP's scores (up to about 35) move by a few float32 steps with the batch's shape
    job = dict(metrics=("length", "clip"), params={"clip": {"model": f"local-dir:{tiny_clip}"}}, batch_size=1,
               workers=0, progress=False)
    local = run_score_job(ScoreJob(input=str(data), out=str(tmp_path / "local.parquet"), **job))
    sharded = run_ray_job(ScoreJob(input=str(data), out=str(tmp_path / "ray"), engine="ray",
                                   ray={"shard_records": 5}, **job))
    a, b = local.table, read_score_dir(tmp_path / "ray")
    assert b.column("id").to_pylist() == a.column("id").to_pylist() and a.num_rows == 38
    np.testing.assert_allclose(b.column("clip").to_numpy(), a.column("clip").to_numpy(), rtol=0, atol=1e-5)
    rejected = (tmp_path / "ray" / "scores.rejected.jsonl").read_text()
    assert rejected == (tmp_path / "local.parquet.rejected.jsonl").read_text()
    assert "duplicate content" in rejected and "ov-6" in rejected
    assert "10 shards" in sharded.summary and "input read by 3 tasks" in sharded.summary  # 16 + 16 + 8 rows by 5
