"""DigitsVQA-Mix (`mmselect demo-data --mix`): disjoint source images per split, the configured task shares, the
CLIP-blind corruptions recorded in truth.jsonl, and two-image records that fine-tuning encodes with both images."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from selector.app.demo.mix import TASKS, MixConfig, build_digits_mix, task_counts


def _rows(path):
    return [json.loads(line) for line in path.open()]


def _images(rec) -> list[str]:
    return rec["image"] if isinstance(rec["image"], list) else [rec["image"]]


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix")
    meta = build_digits_mix(out, MixConfig(n_pretrain=80, n_train=400, n_val=40, n_test=80, noise=0.4, seed=5))
    return out, meta


def test_splits_share_no_source_image(mix):
    out, _ = mix
    used = {name: {im for r in _rows(out / f"{name}.jsonl") for im in _images(r)}
            for name in ("pretrain", "train", "val", "test")}
    names = list(used)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not used[a] & used[b], (a, b)
    assert all((out / im).is_file() for ims in used.values() for im in ims)


def test_task_shares_match_the_settings(mix):
    out, meta = mix
    for name, n in (("val", 40), ("test", 80), ("pretrain", 80)):
        assert Counter(r["task"] for r in _rows(out / f"{name}.jsonl")) == {t: n // 4 for t in TASKS}
    train = _rows(out / "train.jsonl")
    shares = Counter(r["task"] for r in train)
    assert len(train) == 400 and meta["train_tasks"] == dict(shares)
    # The pool before the added copies is exactly 70/10/10/10; copies of clean records keep it within 3 points.
    for task, share in zip(TASKS, MixConfig().train_shares):
        assert abs(shares[task] / 400 - share) < 0.03, (task, shares)
    assert task_counts(10, (0.7, 0.1, 0.1, 0.1)) == {"identify": 7, "parity": 1, "compare": 1, "sum": 1}


def test_truth_records_task_and_corruption_and_answers_are_right_or_wrong_as_recorded(mix):
    out, meta = mix
    train = {r["id"]: r for r in _rows(out / "train.jsonl")}
    truth = _rows(out / "truth.jsonl")
    assert [t["id"] for t in truth] == list(train)
    assert sum(not t["clean"] for t in truth) == round(0.4 * 400)
    kinds = Counter(t["corruption"] for t in truth if not t["clean"])
    assert kinds["duplicate"] + kinds["near_duplicate"] == 40 and kinds["near_duplicate"] >= 1
    for t in truth:
        rec = train[t["id"]]
        assert rec["task"] == t["task"] and len(_images(rec)) == (2 if t["task"] in ("compare", "sum") else 1)
        answer = rec["conversations"][1]["value"]
        if t["corruption"] == "wrong_comparison":
            assert t["task"] == "compare"
        if t["corruption"] == "wrong_parity":
            assert t["task"] == "parity" and ("odd" in answer or "even" in answer)
    # Deterministic: the same seed writes the same files.
    again = build_digits_mix(out.parent / "again", MixConfig(n_pretrain=80, n_train=400, n_val=40, n_test=80,
                                                              noise=0.4, seed=5))
    assert again == meta and (out.parent / "again" / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()


@pytest.mark.slow
def test_two_image_records_are_encoded_with_both_images(mix):
    from finetune import build_tiny_model
    from finetune.data import encode_records
    from transformers import AutoProcessor

    out, _ = mix
    texts = [line for name in ("pretrain", "train", "val", "test") for line in (out / f"{name}.jsonl").open()]
    model = build_tiny_model("llava", out / "vlm", texts=texts)
    processor = AutoProcessor.from_pretrained(model)
    enc = encode_records(out / "test.jsonl", processor, images=out, dedup=False)
    assert not enc.rejected
    by_task = {}
    for ex, rec in zip(enc.examples, _rows(out / "test.jsonl")):
        by_task.setdefault(rec["task"], ex)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    one = int((by_task["identify"].input_ids == image_id).sum())
    assert one > 0 and int((by_task["compare"].input_ids == image_id).sum()) == 2 * one
    assert by_task["sum"].image_inputs["pixel_values"].shape[0] == 2
