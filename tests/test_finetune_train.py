"""LoRA training on the tiny VLM: loss falls, only the adapter changes, resume equals an uninterrupted run, and the
`python -m finetune` / `accelerate launch finetune` entry points agree."""
from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune import FinetuneConfig, evaluate, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(digits_vqa, tmp_path_factory):
    from selector.app.demo.tiny_vlm import build_tiny_vlm_for

    return build_tiny_vlm_for(digits_vqa, tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="module")
def small_sets(digits_vqa, tmp_path_factory):
    """16 short-answer training records and 8 evaluation records, written beside DigitsVQA's images."""
    lines = (digits_vqa / "val.jsonl").read_text().splitlines()
    train_path, eval_path = digits_vqa / "ft-train16.jsonl", digits_vqa / "ft-eval8.jsonl"
    train_path.write_text("\n".join(lines[:16]) + "\n")
    eval_path.write_text("\n".join(lines[16:24]) + "\n")
    return train_path, eval_path


def _cfg(tiny, data, out, **kw) -> FinetuneConfig:
    base = dict(model=str(tiny), data=str(data), out=str(out), batch_size=4, epochs=2, lr=5e-3, warmup_ratio=0.1,
                threads=1, progress=False, report_to="none", max_new_tokens=2)
    base.update(kw)
    return FinetuneConfig(**base)


def test_lora_lowers_loss_and_changes_only_adapter(tiny, small_sets, tmp_path):
    train_path, _ = small_sets
    before = evaluate(str(tiny), str(train_path), generate=False)["eval_loss"]
    result = train(_cfg(tiny, train_path, tmp_path / "run", eval_data=str(train_path), epochs=4, merge=True,
                        generate=False))
    after = result.metrics["eval"]["eval_loss"]
    assert after < before - 0.5, (before, after)
    assert result.steps == 16 and result.metrics["train"]["steps"] == 16

    adapter = load_file(result.adapter_path / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert all("language_model" in k and "vision_tower" not in k for k in adapter)
    assert {k.split(".")[-3] for k in adapter} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert result.metrics["train"]["trainable_params"] == sum(v.numel() for v in adapter.values())

    base = load_file(tiny / "model.safetensors")
    merged = load_file(result.model_path / "model.safetensors")
    assert set(base) == set(merged)
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed, "merging the adapter changed nothing"
    assert all("language_model" in k and k.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj")
               for k in changed), sorted(changed)[:5]
    # Reloading base + adapter through the public evaluate() reproduces the run's own evaluation.
    again = evaluate(str(tiny), str(train_path), adapter=str(result.adapter_path), generate=False)
    assert again["eval_loss"] == pytest.approx(after, rel=1e-4)


def test_resume_after_kill_matches_uninterrupted_run(tiny, small_sets, tmp_path):
    train_path, eval_path = small_sets
    kw = dict(eval_data=str(eval_path), save_every=3, lora_dropout=0.1, seed=3)
    full = train(_cfg(tiny, train_path, tmp_path / "full", **kw))
    assert full.steps == 8

    out = tmp_path / "killed"
    part = train(_cfg(tiny, train_path, out, stop_after_steps=5, **kw))
    assert part.steps == 5 and not part.metrics["train"]["finished"] and part.adapter_path is None
    # A kill at step 5 loses everything after the last periodic checkpoint (step 3).
    shutil.rmtree(out / "checkpoints" / "step-5")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-3"]
    resumed = train(_cfg(tiny, train_path, out, resume=True, **kw))
    assert resumed.steps == full.steps
    assert resumed.metrics["train"]["final_loss"] == pytest.approx(full.metrics["train"]["final_loss"], abs=1e-6)
    for key in ("eval_loss", "exact_match", "contains"):
        assert resumed.metrics["eval"][key] == pytest.approx(full.metrics["eval"][key], abs=1e-6), key
    hist_full = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    hist_resumed = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["loss"] for h in hist_resumed] == pytest.approx([h["loss"] for h in hist_full], abs=1e-6)


def _run(cmd: list[str], out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def _cli_args(tiny, train_path, eval_path, out) -> list[str]:
    return ["--model", str(tiny), "--data", str(train_path), "--eval-data", str(eval_path), "--out", str(out),
            "--batch-size", "4", "--epochs", "1", "--lr", "5e-3", "--seed", "7", "--max-new-tokens", "2",
            "--threads", "1", "--report-to", "none", "-q"]


@pytest.mark.processes
def test_python_m_and_accelerate_launch_write_the_same_metrics(tiny, small_sets, tmp_path, monkeypatch):
    train_path, eval_path = small_sets
    # `python -m finetune` run in this process (runpy is what -m does), to save one interpreter start-up.
    monkeypatch.setattr(sys, "argv", ["finetune", *_cli_args(tiny, train_path, eval_path, tmp_path / "a")])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("finetune", run_name="__main__", alter_sys=True)
    assert done.value.code == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    b = _run([*launcher, "finetune", *_cli_args(tiny, train_path, eval_path, tmp_path / "b")], tmp_path / "b")
    assert a["train"]["steps"] == b["train"]["steps"] == 4
    assert a["eval"] == b["eval"]
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert (tmp_path / "b" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.benchmark
def test_two_process_run_matches_single_process_loss(tiny, small_sets, tmp_path):
    train_path, eval_path = small_sets
    one = _run([sys.executable, "-m", "finetune", *_cli_args(tiny, train_path, eval_path, tmp_path / "one"),
                "--lora-dropout", "0"], tmp_path / "one")
    # accelerate starts several CPU processes through its torchrun launcher (--multi_gpu); train() joins them
    # as one gloo group. --batch-size is per process: 2 x 2 processes is the single process's global batch of 4.
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two = _run([*launcher, "finetune", *_cli_args(tiny, train_path, eval_path, tmp_path / "two"),
                "--lora-dropout", "0", "--batch-size", "2"], tmp_path / "two")
    assert two["train"]["processes"] == 2 and two["train"]["steps"] == one["train"]["steps"]
    assert two["train"]["global_batch"] == one["train"]["global_batch"] == 4
    assert [h["loss"] for h in two["history"]] == pytest.approx([h["loss"] for h in one["history"]], rel=1e-4)
    assert two["eval"]["eval_loss"] == pytest.approx(one["eval"]["eval_loss"], rel=1e-4)


def test_a_shared_eval_cache_encodes_once_and_changes_nothing(tiny, small_sets, tmp_path, monkeypatch):
    """Label runs share the encoded eval set: the second run encodes only its training data, same metrics."""
    import finetune.trainer as trainer

    train_path, eval_path = small_sets
    plain = train(_cfg(tiny, train_path, tmp_path / "plain", eval_data=str(eval_path)))
    calls = []
    real = trainer.encode_records
    monkeypatch.setattr(trainer, "encode_records", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))
    cache: dict = {}
    first = train(_cfg(tiny, train_path, tmp_path / "a", eval_data=str(eval_path)), cache)
    second = train(_cfg(tiny, train_path, tmp_path / "b", eval_data=str(eval_path)), cache)
    assert [str(p) for p in calls].count(str(eval_path)) == 1 and len(cache) == 1
    assert first.metrics["eval"] == second.metrics["eval"] == plain.metrics["eval"]
