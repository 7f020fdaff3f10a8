"""The family matrix: for each of LLaVA-1.5, LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Idefics3 (SmolVLM) and Gemma 3, a
tiny random model built from the family's real config and processor classes (`finetune.build_tiny_model`) is
LoRA-fine-tuned, evaluated by generation and reloaded through the public API; its loss mask is checked by decoding
the label tokens against the answers, on single-image, two-image, text-only and multi-turn records."""
from __future__ import annotations

import json
import time

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
