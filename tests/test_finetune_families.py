"""The family matrix: for each of LLaVA-1.5, LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Idefics3 (SmolVLM) and Gemma 3, a
tiny random model built from the family's real config and processor classes (`finetune.build_tiny_model`) is
LoRA-fine-tuned, evaluated by generation and reloaded through the public API; its loss mask is checked by decoding
the label tokens against the answers, on single-image, two-image, text-only and multi-turn records."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from finetune import FinetuneConfig, build_tiny_model, evaluate, train
from finetune.data import IGNORE, encode_records
from finetune.modeling import load_model, stop_token_ids
from finetune.tiny import FAMILY_NAMES

pytestmark = pytest.mark.families
ANSWERS = ["red", "blue", "green", "seven", "a cat", "two"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Nine LLaVA records over images of three shapes: six with one image, one with two, one text-only, and one
    two-turn conversation. Returns (file, {id: [answers in order]})."""
    from PIL import Image

    root = tmp_path_factory.mktemp("family-data")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        h, w = [(32, 32), (24, 40), (40, 24)][i % 3]
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
    rows = [{"id": f"one{i}", "image": f"images/im{i}.png",
             "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": a}]}
            for i, a in enumerate(ANSWERS)]
    rows.append({"id": "two", "images": ["images/im0.png", "images/im1.png"], "conversations": [
        {"from": "human", "value": "<image>\n<image>\nCompare them."}, {"from": "gpt", "value": "the same"}]})
    rows.append({"id": "text", "conversations": [{"from": "human", "value": "Say hi."},
                                                 {"from": "gpt", "value": "hi there"}]})
    rows.append({"id": "turns", "image": "images/im2.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a dog"},
        {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "brown"}]})
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {r["id"]: [t["value"] for t in r["conversations"] if t["from"] == "gpt"] for r in rows}
    return path, answers


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def tiny(request, tmp_path_factory):
    return request.param, build_tiny_model(request.param, tmp_path_factory.mktemp(request.param))


def _spans(labels: list[int]) -> list[list[int]]:
    """Runs of consecutive label tokens that carry loss."""
    spans, cur = [], []
    for lab in labels + [IGNORE]:
        if lab != IGNORE:
            cur.append(lab)
        elif cur:
            spans.append(cur)
            cur = []
    return spans


def test_loss_mask_covers_exactly_the_answers(tiny, records):
    family, folder = tiny
    path, answers = records
    model, processor = load_model(str(folder))
    assert model.config.model_type == family
    encoded = encode_records(path, processor, dedup=False, stop_ids=stop_token_ids(model, processor))
    assert encoded.rejected == [] and sorted(ex.id for ex in encoded.examples) == sorted(answers)
    tok, stops = processor.tokenizer, stop_token_ids(model, processor)
    for ex in encoded.examples:
        ids, labels = ex.input_ids.tolist(), ex.labels.tolist()
        assert all(lab == IGNORE or lab == i for lab, i in zip(labels, ids))
        spans = _spans(labels)
        # Each answer, and nothing else, carries loss; each span holds a stop token, so the model learns to stop.
        assert [tok.decode(s, skip_special_tokens=True).strip() for s in spans] == answers[ex.id], (family, ex.id)
        assert all(stops & set(s) for s in spans), (family, ex.id, [tok.decode(s) for s in spans])
        # The generation prompt is everything before the last answer.
        assert ex.prompt_ids.tolist() == ids[: len(ex.prompt_ids)]
        assert labels[len(ex.prompt_ids)] != IGNORE and labels[len(ex.prompt_ids) - 1] == IGNORE
    by_id = {ex.id: ex for ex in encoded.examples}
    image_id = processor.image_token_id
    n_image = {k: int((ex.input_ids == image_id).sum()) for k, ex in by_id.items()}
    assert n_image["text"] == 0 and n_image["two"] > n_image["one0"] > 0
    assert by_id["text"].image_inputs == {} and by_id["two"].image_inputs


def test_lora_trains_evaluates_by_generation_and_reloads(tiny, records, tmp_path):
    family, folder = tiny
    path, answers = records
    before = evaluate(str(folder), str(path), generate=False)["eval_loss"]
    t0 = time.perf_counter()
    result = train(FinetuneConfig(model=str(folder), data=str(path), eval_data=str(path), out=str(tmp_path / "run"),
                                  epochs=6, batch_size=3, lr=1e-2, lora_dropout=0.0, warmup_ratio=0.0, threads=1,
                                  progress=False, report_to="none", max_new_tokens=4))
    ev = result.metrics["eval"]
    print(f"\n{family}: {result.steps} steps, {result.timings['train_s'] / result.steps:.3f} s/step, "
          f"eval loss {before:.3f} -> {ev['eval_loss']:.3f}, run {time.perf_counter() - t0:.1f} s")
    assert ev["eval_examples"] == len(answers) and ev["eval_rejected"] == 0
    assert ev["eval_loss"] < before - 0.2, (family, before, ev["eval_loss"])
    # Evaluation by generation: every short-answer record got a greedy prediction.
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert ev["short_answer_examples"] == len(rows) == sum(a[-1] != "" for a in answers.values())
    assert all(isinstance(r["prediction"], str) for r in rows)
    # Only LoRA weights of the language model are saved ...
    adapter = load_file(result.adapter_path / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert not any(part in k for k in adapter for part in ("vision", "visual", "siglip"))
    # ... and loading them back onto the base model reproduces the run's evaluation.
    again = evaluate(str(folder), str(path), adapter=str(result.adapter_path), generate=False)
    assert again["eval_loss"] == pytest.approx(ev["eval_loss"], rel=1e-4)


# --- flags and launchers, on one family each ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return build_tiny_model("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl"))


def _cfg(model, path, out, **kw) -> FinetuneConfig:
    base = dict(model=str(model), data=str(path), out=str(out), epochs=2, batch_size=3, lora_dropout=0.0,
                warmup_ratio=0.0, threads=1, progress=False, report_to="none", generate=False)
    return FinetuneConfig(**{**base, **kw})


def test_default_lr_is_derived_from_the_width_and_moves_the_adapter(qwen, records, tmp_path):
    from finetune.config import lr_for_width

    path, _ = records
    before = evaluate(str(qwen), str(path), generate=False)["eval_loss"]
    result = train(_cfg(qwen, path, tmp_path / "run", eval_data=str(path), epochs=4))
    train_metrics = result.metrics["train"]
    assert train_metrics["lr"] == lr_for_width(64)[0] == 3e-3 and "hidden size 64" in train_metrics["lr_how"]
    assert train_metrics["global_batch"] == 3
    assert result.metrics["eval"]["eval_loss"] < before - 0.1, (before, result.metrics["eval"]["eval_loss"])


def test_gradient_checkpointing_gives_the_same_losses(qwen, records, tmp_path):
    path, _ = records
    plain = train(_cfg(qwen, path, tmp_path / "plain", lr=1e-2))
    ckpt = train(_cfg(qwen, path, tmp_path / "ckpt", lr=1e-2, gradient_checkpointing=True))
    losses = [[h["loss"] for h in json.loads((tmp_path / d / "metrics.json").read_text())["history"]]
              for d in ("plain", "ckpt")]
    assert plain.steps == ckpt.steps == 6
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[0][-1] < losses[0][0]


def test_out_is_refused_resumed_or_overwritten_never_wiped(qwen, records, tmp_path):
    from selector.core.errors import MmselectError

    path, _ = records
    out = tmp_path / "run"
    part = train(_cfg(qwen, path, out, lr=1e-2, stop_after_steps=2))
    assert part.steps == 2 and (out / "checkpoints" / "step-2").is_dir()
    with pytest.raises(MmselectError, match=r"already holds a run \(checkpoints.*--resume.*--overwrite"):
        train(_cfg(qwen, path, out, lr=1e-2))
    assert (out / "checkpoints" / "step-2").is_dir()  # nothing was wiped
    # Resuming with other LoRA settings is one clear line naming them, not a tensor size mismatch.
    with pytest.raises(MmselectError, match=r"lora_r 16 -> 8.*--overwrite"):
        train(_cfg(qwen, path, out, lr=1e-2, lora_r=8, resume=True))
    done = train(_cfg(qwen, path, out, lr=1e-2, resume=True))
    assert done.steps == 6 and done.metrics["train"]["finished"]
    again = train(_cfg(qwen, path, out, lr=1e-2, lora_r=8, overwrite=True))
    assert again.steps == 6 and not (out / "checkpoints").exists()
    assert load_file(again.adapter_path / "adapter_model.safetensors")  # the new run's adapter


def test_resolution_limits_where_the_processor_has_them(qwen, records, tmp_path_factory):
    from selector.core.errors import SettingsError

    path, _ = records

    def image_tokens(model, **limits):
        _, processor = load_model(str(model), **limits)
        encoded = encode_records(path, processor, dedup=False, limit=1)
        return int((encoded.examples[0].input_ids == processor.image_token_id).sum())

    assert image_tokens(qwen, max_pixels=16 * 16) < image_tokens(qwen)
    idefics = build_tiny_model("idefics3", tmp_path_factory.mktemp("idefics3"))
    assert image_tokens(idefics, image_longest_edge=32) < image_tokens(idefics)
    with pytest.raises(SettingsError, match="--image-longest-edge.*takes --max-pixels"):
        load_model(str(qwen), image_longest_edge=32)


def _launch(cmd: list[str], cwd, out) -> dict:
    """Run a launcher in a folder outside the repository, with the package importable (as once installed)."""
    import os
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_accelerate_launch_m_and_mmselect_finetune_run_from_any_folder(qwen, records, tmp_path):
    import sys

    path, _ = records
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["--model", str(qwen), "--data", str(path), "--epochs", "1", "--batch-size", "3", "--lr", "1e-2",
            "--threads", "1", "--report-to", "none", "--no-generate"]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    a = _launch([*launcher, "-m", "finetune", *args, "-q", "--out", str(tmp_path / "a")], elsewhere, tmp_path / "a")
    mmselect = Path(sys.executable).with_name("mmselect")  # the console script `pip install -e .` made
    b = _launch([str(mmselect), "-q", "finetune", *args, "--out", str(tmp_path / "b")], elsewhere, tmp_path / "b")
    assert a["train"]["steps"] == b["train"]["steps"] == 3
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
