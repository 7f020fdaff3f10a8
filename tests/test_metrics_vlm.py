"""The judge, reward and text-embedding metrics with local models of the VLM families: a tiny Qwen2-VL
(`finetune.build_tiny_model`) judges text + image and embeds chat-rendered records; a tiny decoder reward model
(Llama sequence classification) scores pairs. Replies are parsed, and failures are nulls with reasons."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from finetune import build_tiny_model
from metrics import build
from selector.core.metric_api import Batch
from metrics.runner import RunnerConfig, score_records
from selector.core.errors import MmselectError


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return build_tiny_model("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


ROWS = {"id": ["a", "b", "c"], "instruction": ["What is shown?", "Which digit?", "Colour?"],
        "answer": ["A red square.", "7", "blue"], "images": [["0.png"], ["1.png"], ["missing.png"]]}


def test_vlm_judge_sees_the_image_and_parses_its_replies(vlm, images):
    """The prompt and the image reach the model's generate; the new tokens are decoded and parsed."""
    import torch
    from PIL import Image

    judge = build("judge", backend="hf", model=str(vlm), send_images=True, max_tokens=8)
    judge.setup("cpu")
    processor, model, _, _ = judge._vlm
    tok = processor.tokenizer
    replies, seen = iter(["85\nAccurate.", "the answer has 2 sentences"]), []

    def fake_generate(**inputs):
        seen.append(inputs)
        reply = tok(next(replies), add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([inputs["input_ids"], reply], dim=1)

    model.generate = fake_generate
    pictures = [Image.open(images / f"{i}.png").convert("RGB") for i in range(2)]
    batch = Batch(["a", "b", "c"], ROWS["instruction"], ROWS["answer"], pictures + [None],
                  [None, None, "image missing"])
    scored = judge.score(batch)
    assert scored.values[0] == 85 and np.isnan(scored.values[1:]).all()
    assert scored.reasons[0] is None and scored.reasons[1].startswith("unparsable reply")
    assert scored.reasons[2] == "image missing" and len(seen) == 2  # no request for a record without its image
    for inputs, instruction in zip(seen, ROWS["instruction"]):
        assert {"pixel_values", "image_grid_thw"} <= set(inputs)
        prompt = tok.decode(inputs["input_ids"][0])
        assert instruction in prompt and prompt.count("<|image_pad|>") > 0


def test_vlm_judge_with_a_random_model_gives_nulls_with_reasons(vlm, images):
    judge = build("judge", backend="hf", model=str(vlm), send_images=True, max_tokens=4)
    out = score_records(pa.table(ROWS), [judge], RunnerConfig(batch_size=3, workers=1), images_root=str(images))
    values, reasons = out.column("judge").to_pylist(), out.column("judge__reason").to_pylist()
    assert all((v is None) == (r is not None) for v, r in zip(values, reasons))
    assert all(v is None or 0 <= v <= 100 for v in values)
    assert reasons[2].startswith("cannot read image missing.png")


def test_judge_images_need_a_vision_language_model(tmp_path):
    from tests.fixtures.tiny_models import build_tiny_llm

    llm = build_tiny_llm(tmp_path / "llm")
    with pytest.raises(MmselectError, match="--judge-images.*text-only"):
        build("judge", backend="hf", model=str(llm), send_images=True).setup("cpu")


def test_chat_embedding_is_the_last_token_state_of_the_rendered_record(vlm):
    import torch
    from transformers import AutoModel, AutoTokenizer

    rows = {"id": ["s", "l", "e"], "instruction": ["Hi", "Hi", "Hi"],
            "answer": ["short", "a much longer answer " * 4, ""], "images": [[], [], []]}
    metric = build("embed-text", encoder=f"chat:{vlm}", column="emb")
    both = score_records(pa.table(rows), [metric], RunnerConfig(batch_size=3))
    emb = both.column("emb").to_pylist()
    assert emb[2] is None and both.column("emb__reason").to_pylist()[2] == "empty text"
    tok, model = AutoTokenizer.from_pretrained(vlm), AutoModel.from_pretrained(vlm).eval()
    text = tok.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                    {"role": "assistant", "content": [{"type": "text", "text": "short"}]}],
                                   tokenize=False)
    assert text.endswith("<|im_start|>assistant\nshort<|im_end|>\n")
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        want = model(**ids).last_hidden_state[0, -1].numpy()
    np.testing.assert_allclose(emb[0], want, atol=1e-5)  # padding in the batch of three changed nothing


def test_chat_embedding_needs_a_chat_template(tmp_path):
    from tests.fixtures.tiny_models import build_tiny_llm

    llm = build_tiny_llm(tmp_path / "llm")
    with pytest.raises(MmselectError, match=f"chat:{llm}.*no chat template.*llm:"):
        build("embed-text", encoder=f"chat:{llm}").setup("cpu")


def test_reward_from_a_decoder_sequence_classification_folder(tmp_path):
    """Any sequence-classification folder works as --reward-model: here a tiny Llama with one output, scored on its
    last non-pad token; an empty answer is a null with its reason."""
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

    from finetune.tiny import CHATS, build_tokenizer

    tok = build_tokenizer(CHATS["qwen2_vl"])
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    out = score_records(pa.table({**ROWS, "answer": ["A red square.", "", "blue"], "images": [[], [], []]}),
                        [build("reward", model=str(tmp_path / "rm"))], RunnerConfig(batch_size=3))
    values, reasons = out.column("reward").to_pylist(), out.column("reward__reason").to_pylist()
    assert values[1] is None and reasons == [None, "empty answer", None]
    net = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    with torch.no_grad():
        want = net(**tok("Colour?", "blue", return_tensors="pt")).logits[0, 0].item()
    assert values[2] == pytest.approx(want, abs=1e-4)
