"""Tiny random-weight models of the VLM families people fine-tune, built offline: `build_tiny_model(family, out)`.

Each family is built from its real config class with its real processor class, a small tokenizer made with the
`tokenizers` library that carries the family's special tokens, and the family's hub chat template. The result is an
ordinary HF folder that `AutoModelForImageTextToText` / `AutoProcessor` load like the hub model, so tests and demos
exercise the real loading, rendering and training paths without a download.

Tokenizers are byte-level (every text encodes and decodes exactly) unless `texts` are given: then a word-level
vocabulary built from them (short sequences; what the demo's DigitsVQA model uses).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from selector.core.io import atomic_write
from selector.core.registry import Registry

# Same token split as the word-level tokenizer's `Whitespace` pre-tokenizer, so its vocabulary covers what it emits.
WORD_RE = re.compile(r"\w+|[^\w\s]+")


@dataclass(frozen=True)
class ChatSpec:
    """A family's special tokens and chat template. `special` lists every special token in vocabulary order;
    `named` are the tokenizer attributes processors read (image_token, boi_token, ...); `extra_eos` are tokens
    that also end a generation (Gemma's <end_of_turn>)."""

    template: str
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    special: tuple[str, ...]
    named: dict = field(default_factory=dict)
    extra_eos: tuple[str, ...] = ()


@dataclass(frozen=True)
class TinySizes:
    """Sizes of a tiny model: small enough that every family trains a few steps in seconds on one CPU core."""

    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 1
    vision_heads: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    max_positions: int = 2048


# --- chat templates as the families' hub processors ship them -------------------------------------------------------
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', "
    "'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', "
    "'text') %}{{ '\n' + content['text'] }}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}"
    "{% endfor %}{% endif %}{{'<|im_end|>'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}")

QWEN_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>")
IDEFICS3_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<fake_token_around_image>",
                   "<image>", "<global-img>",
                   *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))

CHATS: dict[str, ChatSpec] = {
    "llava": ChatSpec(LLAVA_TEMPLATE, "<s>", "</s>", "<pad>", "<unk>", ("<unk>", "<s>", "</s>", "<pad>", "<image>"),
                      {"image_token": "<image>"}),
    "llava_onevision": ChatSpec(ONEVISION_TEMPLATE, None, "<|im_end|>", "<|endoftext|>", None,
                                ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
                                {"image_token": "<image>", "video_token": "<video>"}),
    "qwen2_vl": ChatSpec(QWEN_VL_TEMPLATE, None, "<|im_end|>", "<|endoftext|>", None, QWEN_TOKENS,
                         {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                          "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}),
    "idefics3": ChatSpec(IDEFICS3_TEMPLATE, "<|im_start|>", "<end_of_utterance>", "<|im_end|>", None,
                         IDEFICS3_TOKENS, {"image_token": "<image>"}),
    "gemma3": ChatSpec(GEMMA3_TEMPLATE, "<bos>", "<eos>", "<pad>", "<unk>",
                       ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                        "<end_of_image>", "<image_soft_token>"),
                       {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                        "image_token": "<image_soft_token>"}, extra_eos=("<end_of_turn>",)),
}
CHATS["qwen2_5_vl"] = CHATS["qwen2_vl"]


def build_vocab(texts: Iterable[str], min_count: int = 1) -> list[str]:
    """Words and punctuation of `texts` (sorted, so the vocabulary does not depend on text order), plus the digits."""
    counts: dict[str, int] = {}
    for text in texts:
        for w in WORD_RE.findall(text):
            counts[w] = counts.get(w, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= min_count)
    return sorted(set(words) | {str(d) for d in range(10)})


def build_tokenizer(chat: ChatSpec, texts: Iterable[str] | None = None, *, min_count: int = 1):
    """A fast tokenizer with the family's special tokens and chat template: byte-level BPE (no merges: every text
    round-trips) or, given `texts`, word-level over their vocabulary (unknown words map to the unk token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(chat.special)}
    if texts is None:
        for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab.setdefault(ch, len(vocab))
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=chat.unk))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    else:
        for w in build_vocab(texts, min_count):
            vocab.setdefault(w, len(vocab))
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=chat.unk))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        # WordPiece's decoder joins tokens with spaces and cleans up spaces before punctuation ("7 ." -> "7.").
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    roles = {"bos_token": chat.bos, "eos_token": chat.eos, "pad_token": chat.pad, "unk_token": chat.unk}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **{k: v for k, v in roles.items() if v is not None},
                                   extra_special_tokens=dict(chat.named), model_max_length=4096,
                                   padding_side="right")
    rest = [t for t in chat.special if t not in roles.values() and t not in chat.named.values()]
    fast.add_special_tokens({"additional_special_tokens": rest})
    fast.chat_template = chat.template
    return fast


def _ids(tok, *names: str) -> list[int]:
    return [tok.convert_tokens_to_ids(n) for n in names]


def _text_kwargs(tok, s: TinySizes) -> dict:
    return dict(vocab_size=len(tok), hidden_size=s.text_hidden, intermediate_size=s.text_intermediate,
                num_hidden_layers=s.text_layers, num_attention_heads=s.text_heads,
                num_key_value_heads=s.text_kv_heads, max_position_embeddings=s.max_positions,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)


def _siglip(s: TinySizes, image_size: int | None = None):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(image_size=image_size or s.image_size, patch_size=s.patch_size,
                              hidden_size=s.vision_hidden, intermediate_size=2 * s.vision_hidden,
                              num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads)


def _llava(tok, s: TinySizes, chat: ChatSpec):
    """LLaVA-1.5: CLIP vision tower, fixed image-token count (one per patch, CLS dropped), Llama."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    image = chat.named["image_token"]
    grid = s.image_size // s.patch_size
    ip = CLIPImageProcessor(size={"shortest_edge": s.image_size},
                            crop_size={"height": s.image_size, "width": s.image_size}, do_resize=True,
                            do_center_crop=True, do_normalize=True, do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=s.patch_size,
                               vision_feature_select_strategy="default", chat_template=chat.template,
                               image_token=image, num_additional_image_tokens=1)
    vision = CLIPVisionConfig(image_size=s.image_size, patch_size=s.patch_size, hidden_size=s.vision_hidden,
                              intermediate_size=4 * s.vision_hidden, num_hidden_layers=s.vision_layers,
                              num_attention_heads=s.vision_heads, projection_dim=s.vision_hidden)
    text = LlamaConfig(tie_word_embeddings=False, **_text_kwargs(tok, s))
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids(image),
                      image_seq_length=grid * grid, vision_feature_select_strategy="default",
                      vision_feature_layer=-1)
    return LlavaForConditionalGeneration, cfg, processor


def _llava_onevision(tok, s: TinySizes, chat: ChatSpec):
    """LLaVA-OneVision: SigLIP, any-resolution tiles (`image_sizes`, `batch_num_images`), Qwen2."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor,
                              Qwen2Config)

    n = s.image_size
    pinpoints = [[n, n], [n, 2 * n], [2 * n, n], [2 * n, 2 * n]]
    ip = LlavaOnevisionImageProcessor(size={"height": n, "width": n}, image_grid_pinpoints=pinpoints)
    vp = LlavaOnevisionVideoProcessor(size={"height": n, "width": n})
    processor = LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                        chat_template=chat.template,
                                        num_image_tokens=(n // s.patch_size) ** 2,
                                        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    text = Qwen2Config(tie_word_embeddings=False, **_text_kwargs(tok, s))
    cfg = LlavaOnevisionConfig(vision_config=_siglip(s), text_config=text,
                               image_token_index=tok.convert_tokens_to_ids(chat.named["image_token"]),
                               video_token_index=tok.convert_tokens_to_ids(chat.named["video_token"]),
                               image_grid_pinpoints=pinpoints, vision_feature_select_strategy="full",
                               vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9")
    return LlavaOnevisionForConditionalGeneration, cfg, processor


def _qwen_text(tok, s: TinySizes) -> dict:
    head = s.text_hidden // s.text_heads
    third = head // 2 // 4
    return dict(tie_word_embeddings=False, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [head // 2 - 2 * third, third, third]},
        **_text_kwargs(tok, s))


def _qwen_processor(cls, tok, s: TinySizes, chat: ChatSpec):
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    unit = s.patch_size * 2  # one merged token covers 2x2 patches
    kw = dict(size={"shortest_edge": unit * unit, "longest_edge": (s.image_size * s.image_size)},
              patch_size=s.patch_size, merge_size=2, temporal_patch_size=2)
    return cls(image_processor=Qwen2VLImageProcessor(**kw), tokenizer=tok,
               video_processor=Qwen2VLVideoProcessor(**kw), chat_template=chat.template)


def _qwen_ids(tok) -> dict:
    image, video, start, end = _ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    return dict(image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)


def _qwen2_vl(tok, s: TinySizes, chat: ChatSpec):
    """Qwen2-VL: dynamic resolution (`image_grid_thw`, flattened patches), M-RoPE positions."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    vision = dict(depth=s.vision_layers, embed_dim=s.vision_hidden, hidden_size=s.text_hidden,
                  num_heads=s.vision_heads, patch_size=s.patch_size, spatial_merge_size=2, temporal_patch_size=2)
    cfg = Qwen2VLConfig(text_config=_qwen_text(tok, s), vision_config=vision, **_qwen_ids(tok))
    return Qwen2VLForConditionalGeneration, cfg, _qwen_processor(Qwen2VLProcessor, tok, s, chat)


def _qwen2_5_vl(tok, s: TinySizes, chat: ChatSpec):
    """Qwen2.5-VL: as Qwen2-VL, with a windowed-attention vision tower."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    vision = dict(depth=s.vision_layers, hidden_size=s.vision_hidden, intermediate_size=2 * s.vision_hidden,
                  num_heads=s.vision_heads, out_hidden_size=s.text_hidden, patch_size=s.patch_size,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=4 * s.patch_size,
                  fullatt_block_indexes=[s.vision_layers - 1])
    cfg = Qwen2_5_VLConfig(text_config=_qwen_text(tok, s), vision_config=vision, **_qwen_ids(tok))
    return Qwen2_5_VLForConditionalGeneration, cfg, _qwen_processor(Qwen2_5_VLProcessor, tok, s, chat)


def _idefics3(tok, s: TinySizes, chat: ChatSpec):
    """Idefics3 / SmolVLM: image splitting into tiles plus a global image, pixel shuffle, `pixel_attention_mask`."""
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor, Idefics3VisionConfig, LlamaConfig)

    scale = 2
    seq = (s.image_size // s.patch_size) ** 2 // (scale * scale)
    ip = Idefics3ImageProcessor(size={"longest_edge": 2 * s.image_size},
                                max_image_size={"longest_edge": s.image_size}, do_image_splitting=True)
    processor = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=chat.template)
    vision = Idefics3VisionConfig(image_size=s.image_size, patch_size=s.patch_size, hidden_size=s.vision_hidden,
                                  intermediate_size=2 * s.vision_hidden, num_hidden_layers=s.vision_layers,
                                  num_attention_heads=s.vision_heads)
    text = LlamaConfig(tie_word_embeddings=False, **_text_kwargs(tok, s))
    cfg = Idefics3Config(vision_config=vision, text_config=text, scale_factor=scale,
                         image_token_id=tok.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    return Idefics3ForConditionalGeneration, cfg, processor


def _gemma3(tok, s: TinySizes, chat: ChatSpec):
    """Gemma 3: SigLIP pooled to a fixed token count, bidirectional attention over images (`token_type_ids`)."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor,
                              Gemma3TextConfig)

    tokens = 4  # mm_tokens_per_image: a square, pooled from the (image_size / patch_size)^2 patches
    ip = Gemma3ImageProcessor(size={"height": s.image_size, "width": s.image_size})
    processor = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=chat.template,
                                image_seq_length=tokens)
    kw = _text_kwargs(tok, s)
    text = Gemma3TextConfig(head_dim=s.text_hidden // s.text_heads, sliding_window=64, **kw)
    boi, eoi, image = _ids(tok, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    cfg = Gemma3Config(text_config=text, vision_config=_siglip(s), mm_tokens_per_image=tokens,
                       boi_token_index=boi, eoi_token_index=eoi, image_token_index=image)
    return Gemma3ForConditionalGeneration, cfg, processor


# family name -> builder(tokenizer, sizes, chat) -> (model class, config, processor); one line per family.
BUILDERS: Registry[Callable] = Registry("model family")
BUILDERS.add("llava", _llava)
BUILDERS.add("llava_onevision", _llava_onevision)
BUILDERS.add("qwen2_vl", _qwen2_vl)
BUILDERS.add("qwen2_5_vl", _qwen2_5_vl)
BUILDERS.add("idefics3", _idefics3)
BUILDERS.add("gemma3", _gemma3)
FAMILY_NAMES = tuple(BUILDERS.names())


def build_tiny_model(family: str, out_dir: str | Path, *, texts: Iterable[str] | None = None,
                     sizes: TinySizes | None = None, chat: ChatSpec | None = None, seed: int = 0,
                     min_word_count: int = 1) -> Path:
    """Build a randomly initialised tiny model of `family` (llava, llava_onevision, qwen2_vl, qwen2_5_vl, idefics3,
    gemma3) and save model + processor to `out_dir` with save_pretrained. `chat` replaces the family's tokens and
    chat template; `texts` make a word-level vocabulary; the same arguments always give the same files."""
    import torch

    builder = BUILDERS.get(family)
    sizes = sizes or TinySizes()
    chat = chat or CHATS[family]
    tok = build_tokenizer(chat, None if texts is None else list(texts), min_count=min_word_count)
    model_cls, cfg, processor = builder(tok, sizes, chat)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(cfg)
    gen = model.generation_config
    eos = [tok.eos_token_id, *_ids(tok, *chat.extra_eos)]
    gen.eos_token_id = eos[0] if len(eos) == 1 else eos
    gen.pad_token_id, gen.bos_token_id = tok.pad_token_id, tok.bos_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    atomic_write(out / "tiny_model.json", [json.dumps({"family": family, "seed": seed, "sizes": sizes.__dict__,
                                                       "word_level": texts is not None}, indent=2).encode()])
    return out


__all__ = ["BUILDERS", "CHATS", "FAMILY_NAMES", "ChatSpec", "TinySizes", "build_tiny_model", "build_tokenizer",
           "build_vocab"]
