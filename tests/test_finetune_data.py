"""Tiny VLM build/load, chat rendering with answer-only labels, bad-record rejection, answer normalisation."""
from __future__ import annotations

import json

import pytest
import torch

from finetune.data import IGNORE, Encoder, collate, encode_records
from finetune.answers import contains, exact_match, normalize_answer


@pytest.fixture(scope="module")
def tiny(digits_vqa, tmp_path_factory):
    from selector.app.demo.tiny_vlm import build_tiny_vlm_for

    return build_tiny_vlm_for(digits_vqa, tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="module")
def loaded(tiny):
    from finetune.modeling import load_model

    return load_model(str(tiny))


def test_tiny_vlm_loads_through_real_auto_classes(tiny, digits_vqa):
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    processor = AutoProcessor.from_pretrained(tiny)
    assert model.config.model_type == "llava"
    assert (tiny / "model.safetensors").is_file() and (tiny / "chat_template.jinja").is_file()
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which digit is this?"}]}]
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    with Image.open(digits_vqa / "images" / sorted(p.name for p in (digits_vqa / "images").iterdir())[0]) as im:
        enc = processor(text=text, images=[im.convert("RGB")], return_tensors="pt")
    n_image_tokens = int((enc["input_ids"] == model.config.image_token_index).sum())
    assert n_image_tokens == (32 // 8) ** 2  # one token per 8x8 patch of a 32x32 image (CLS dropped)
    assert enc["pixel_values"].shape == (1, 3, 32, 32)
    assert processor.tokenizer.convert_ids_to_tokens(enc["input_ids"][0, -1].item()) == "<|assistant|>"
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    # The word-level tokenizer round-trips DigitsVQA text.
    tok = processor.tokenizer
    assert tok.decode(tok("The digit is 7.", add_special_tokens=False)["input_ids"]) == "The digit is 7."


def test_missing_model_offline_names_model_and_flag(monkeypatch):
    from finetune.modeling import load_model
    from selector.core.errors import ModelNotAvailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable, match="--model"):
        load_model("nobody/no-such-vlm-xyz", flag="--model")


def test_labels_masked_exactly_on_prompt_and_padding(loaded):
    model, processor = loaded
    tok = processor.tokenizer
    enc = Encoder(processor)
    ex = enc.encode("r1", [("user", "Which digit is this? Answer with a single digit."), ("assistant", "7")], [])
    ids, labels = ex.input_ids.tolist(), ex.labels.tolist()
    kept = [i for i, lab in enumerate(labels) if lab != IGNORE]
    # Exactly the answer and its end-of-turn token carry loss, and labels there equal the input ids.
    assert tok.convert_ids_to_tokens([ids[i] for i in kept]) == ["7", "<|end|>"]
    assert all(labels[i] == ids[i] for i in kept)
    assert kept == list(range(len(ids) - 2, len(ids)))
    assert ex.prompt_ids.tolist() == ids[: len(ids) - 2]  # generation prompt = everything before the answer

    multi = enc.encode("r2", [("user", "Which digit is this?"), ("assistant", "The digit is 3."),
                              ("user", "Is it even or odd?"), ("assistant", "odd")], [])
    answer_tokens = tok.convert_ids_to_tokens([i for i, lab in zip(multi.input_ids.tolist(), multi.labels.tolist())
                                               if lab != IGNORE])
    assert answer_tokens == ["The", "digit", "is", "3", ".", "<|end|>", "odd", "<|end|>"]
    assert multi.answer == "odd"

    batch = collate([ex, multi], tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(multi.input_ids))
    pad = batch["attention_mask"] == 0
    assert pad[0].sum() == len(multi.input_ids) - len(ex.input_ids) and not pad[1].any()
    assert (batch["labels"][pad] == IGNORE).all() and (batch["input_ids"][pad] == tok.pad_token_id).all()
    left = collate([ex, multi], tok.pad_token_id, prompt_only=True, padding_side="left")
    assert left["attention_mask"][0, 0] == 0 and left["attention_mask"][0, -1] == 1
    assert left["input_ids"][0, -1].item() == tok.convert_tokens_to_ids("<|assistant|>")


def test_image_records_carry_pixels_and_image_tokens(loaded, digits_vqa):
    model, processor = loaded
    encoded = encode_records(digits_vqa / "val.jsonl", processor, limit=3)
    assert len(encoded) == 3
    batch = collate(encoded.examples, processor.tokenizer.pad_token_id)
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    image_id = model.config.image_token_index
    assert ((batch["input_ids"] == image_id).sum(1) == 16).all()
    assert (batch["labels"][batch["input_ids"] == image_id] == IGNORE).all()
    with torch.no_grad():
        out = model(**batch)
    assert torch.isfinite(out.loss)


def test_bad_records_are_rejected_with_reasons_not_crash(loaded, digits_vqa, tmp_path):
    _, processor = loaded
    good = [json.loads(l) for l in (digits_vqa / "val.jsonl").read_text().splitlines()[:4]]
    long_answer = dict(good[1], id="long-answer")
    long_answer["conversations"] = [good[1]["conversations"][0],
                                    {"from": "gpt", "value": " ".join(["digit"] * 600)}]
    long_question = dict(good[1], id="long-question")
    long_question["conversations"] = [{"from": "human", "value": "<image>\n" + " ".join(["digit"] * 600)},
                                      good[1]["conversations"][1]]
    lines = [json.dumps(good[0]), "{not json", json.dumps(dict(good[2], id="no-image", image="images/missing.png")),
             json.dumps({"id": "empty", "image": good[3]["image"],
                         "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                           {"from": "gpt", "value": ""}]}),
             json.dumps(long_question), json.dumps(good[3]), json.dumps(long_answer)]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    encoded = encode_records(path, processor, images=digits_vqa, max_length=128)
    assert [ex.id for ex in encoded.examples] == [good[0]["id"], good[3]["id"], "long-answer"]
    reasons = {r["line"]: r["reason"] for r in encoded.rejected}
    assert set(reasons) == {2, 3, 4, 5}
    assert "invalid JSON" in reasons[2] and "missing" in reasons[3] and "empty answer" in reasons[4]
    assert "beyond max_length 128" in reasons[5]
    # A long answer is cut to max_length (counted), keeping the answer tokens inside it.
    cut = encoded.examples[-1]
    assert encoded.truncated == 1 and cut.truncated and len(cut.input_ids) == len(cut.labels) == 128
    assert (cut.labels != IGNORE).sum() == 128 - len(cut.prompt_ids)


def test_all_bad_training_file_is_a_clean_error(tiny, tmp_path):
    from finetune import FinetuneConfig, train
    from selector.core.errors import MmselectError

    path = tmp_path / "bad.jsonl"
    rows = [{"id": "x", "conversations": []}, {"id": "y", "conversations": [{"from": "human", "value": "hi"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
    with pytest.raises(MmselectError, match="no usable training records"):
        train(FinetuneConfig(model=str(tiny), data=str(path), out=str(tmp_path / "out"), progress=False,
                             report_to="none", threads=1))


@pytest.mark.parametrize("prediction,reference,em,co", [
    ("7", "7", True, True),
    ("The digit is 7.", "7", False, True),
    ("Seven.", "7", True, True),
    ("  the  SEVEN ", "seven", True, True),
    ("17", "7", False, False),  # whole words only
    ("It is a cat", "a cat", False, True),
    ("An apple!", "apple", True, True),  # articles and punctuation dropped
    ("", "7", False, False),
])
def test_answer_normalisation(prediction, reference, em, co):
    assert exact_match(prediction, reference) is em
    assert contains(prediction, reference) is co


def test_normalize_answer_known_strings():
    assert normalize_answer("The Digit: Seven.") == "digit 7"
    assert normalize_answer("Ｔｈｅ  ８") == "8"  # NFKC folds full-width forms
