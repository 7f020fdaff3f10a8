"""A tiny LLaVA-architecture vision-language model built offline from configs.

A small CLIP vision tower and a small Llama share a word-level tokenizer built with the `tokenizers` library from
the texts the model will see (no download). The result is an ordinary HF folder (config, safetensors weights,
tokenizer, image processor, chat template) that `AutoModelForImageTextToText` / `AutoProcessor` load like any hub
model, so tests and demos exercise the real loading path.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from selector.core.io import atomic_write

PAD, UNK, BOS, END = "<pad>", "<unk>", "<s>", "<|end|>"
USER, ASSISTANT, SYSTEM, IMAGE = "<|user|>", "<|assistant|>", "<|system|>", "<image>"
SPECIAL_TOKENS = [PAD, UNK, BOS, END, USER, ASSISTANT, SYSTEM, IMAGE]
# Same token split as the tokenizer's `Whitespace` pre-tokenizer, so the vocabulary covers exactly what it emits.
WORD_RE = re.compile(r"\w+|[^\w\s]+")

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


@dataclass(frozen=True)
class TinyVLMConfig:
    """Sizes of the tiny model. The defaults train DigitsVQA's stage 1 in about a minute on two CPU cores."""

    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 256
    max_positions: int = 256
    min_word_count: int = 1


def build_vocab(texts: Iterable[str], min_count: int = 1) -> list[str]:
    """Words and punctuation of `texts` (sorted, so the vocabulary does not depend on text order)."""
    counts: dict[str, int] = {}
    for text in texts:
        for w in WORD_RE.findall(text):
            counts[w] = counts.get(w, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= min_count)
    # Digits are always present: short answers are single digits, even if a split lacks one of them.
    return sorted(set(words) | {str(d) for d in range(10)})


def build_tokenizer(words: list[str]):
    """A word-level fast tokenizer with the chat special tokens; unknown words map to <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # WordPiece's decoder joins tokens with spaces and cleans up spaces before punctuation ("7 ." -> "7.").
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=END,
                                   extra_special_tokens={"image_token": IMAGE},
                                   model_max_length=4096, padding_side="right")
    fast.add_special_tokens({"additional_special_tokens": [USER, ASSISTANT, SYSTEM]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_vlm(texts: Iterable[str], out_dir: str | Path, *, config: TinyVLMConfig = TinyVLMConfig(),
                   seed: int = 0) -> Path:
    """Build a randomly initialised tiny LLaVA (CLIP vision tower + Llama) and save model + processor to `out_dir`."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    out = Path(out_dir)
    tokenizer = build_tokenizer(build_vocab(texts, config.min_word_count))
    grid = config.image_size // config.patch_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": config.image_size}, crop_size={"height": config.image_size, "width": config.image_size},
        do_resize=True, do_center_crop=True, do_normalize=True, do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=config.patch_size,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               image_token=IMAGE, num_additional_image_tokens=1)
    vision = CLIPVisionConfig(image_size=config.image_size, patch_size=config.patch_size,
                              hidden_size=config.vision_hidden, intermediate_size=4 * config.vision_hidden,
                              num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
                              projection_dim=config.vision_hidden)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=config.text_hidden,
                       intermediate_size=config.text_intermediate, num_hidden_layers=config.text_layers,
                       num_attention_heads=config.text_heads, num_key_value_heads=config.text_heads,
                       max_position_embeddings=config.max_positions, tie_word_embeddings=False,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
                      image_seq_length=grid * grid, vision_feature_select_strategy="default",
                      vision_feature_layer=-1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    atomic_write(out / "tiny_vlm.json", [json.dumps({"seed": seed, "config": config.__dict__}, indent=2).encode()])
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


def build_tiny_vlm_for(data_dir: str | Path, out_dir: str | Path, *, config: TinyVLMConfig = TinyVLMConfig(),
                       seed: int = 0, splits: tuple[str, ...] = ("pretrain.jsonl", "train.jsonl", "val.jsonl",
                                                                 "test.jsonl")) -> Path:
    """A randomly initialised tiny VLM whose vocabulary covers the texts of `data_dir`'s instruction files."""
    data_dir = Path(data_dir)
    texts = [t for name in splits if (data_dir / name).is_file() for t in texts_of_llava_file(data_dir / name)]
    return build_tiny_vlm(texts, out_dir, config=config, seed=seed)
