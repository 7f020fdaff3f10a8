"""The demo's tiny LLaVA: `finetune.build_tiny_model("llava", ...)` with the demo's sizes, a word-level vocabulary
made from DigitsVQA's texts and a compact chat template.

The result is an ordinary HF folder (config, safetensors weights, tokenizer, image processor, chat template) that
`AutoModelForImageTextToText` / `AutoProcessor` load like any hub model, so tests and demos exercise the real
loading path.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from finetune.tiny import ChatSpec, TinySizes, build_tiny_model
from selector.core.io import atomic_write

PAD, UNK, BOS, END = "<pad>", "<unk>", "<s>", "<|end|>"
USER, ASSISTANT, SYSTEM, IMAGE = "<|user|>", "<|assistant|>", "<|system|>", "<image>"

# Messages are lists of {"type": "image"} / {"type": "text", "text": ...} parts (or plain strings). Images sit where
# their parts are; the processor expands each <image> into the vision tower's patch tokens.
CHAT_TEMPLATE = (
    "{{ '" + BOS + "' }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '" + IMAGE + "' }}"
    "{% elif part['type'] == 'text' %}{{ ' ' + part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ ' " + END + "' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ASSISTANT + "' }}{% endif %}"
)
DEMO_CHAT = ChatSpec(CHAT_TEMPLATE, BOS, END, PAD, UNK, (PAD, UNK, BOS, END, USER, ASSISTANT, SYSTEM, IMAGE),
                     {"image_token": IMAGE})


# The demo's sizes: stage 1 on DigitsVQA trains in about a minute on two CPU cores.
DEMO_SIZES = TinySizes(image_size=32, patch_size=8, vision_hidden=64, vision_layers=2, vision_heads=2, text_hidden=128,
                       text_layers=2, text_heads=4, text_kv_heads=4, text_intermediate=256, max_positions=256)


def build_tiny_vlm(texts: Iterable[str], out_dir: str | Path, *, sizes: TinySizes = DEMO_SIZES, seed: int = 0,
                   min_word_count: int = 1) -> Path:
    """Build a randomly initialised tiny LLaVA (CLIP vision tower + Llama) and save model + processor to `out_dir`."""
    out = build_tiny_model("llava", out_dir, texts=texts, sizes=sizes, chat=DEMO_CHAT, seed=seed,
                           min_word_count=min_word_count)
    atomic_write(out / "tiny_vlm.json", [json.dumps({"seed": seed, "sizes": sizes.__dict__}, indent=2).encode()])
    return out


def texts_of_llava_file(path: str | Path) -> list[str]:
    """Every user and assistant text of a LLaVA JSON/JSONL file (for the vocabulary); unreadable lines are skipped."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8", errors="replace")
    if raw.lstrip().startswith("["):
        rows = json.loads(raw)
    else:
        rows = []
        for line in raw.splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    texts = []
    for row in rows:
        for turn in (row.get("conversations") or []) if isinstance(row, dict) else []:
            if isinstance(turn, dict) and isinstance(turn.get("value"), str):
                texts.append(turn["value"].replace(IMAGE, " "))
    return texts


def build_tiny_vlm_for(data_dir: str | Path, out_dir: str | Path, *, sizes: TinySizes = DEMO_SIZES,
                       seed: int = 0, splits: tuple[str, ...] = ("pretrain.jsonl", "train.jsonl", "val.jsonl",
                                                                 "test.jsonl")) -> Path:
    """A randomly initialised tiny VLM whose vocabulary covers the texts of `data_dir`'s instruction files."""
    data_dir = Path(data_dir)
    texts = [t for name in splits if (data_dir / name).is_file() for t in texts_of_llava_file(data_dir / name)]
    return build_tiny_vlm(texts, out_dir, sizes=sizes, seed=seed)
