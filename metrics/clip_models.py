"""CLIP backends behind one small interface: open_clip (arch + pretrained, local-dir:, hf-hub:) and HF transformers
(`hf:ID|DIR`). Loaded once per process and shared by `clip`, `embed-image` and `embed-text`."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable

from selector.core.resolve import loading, resolve_hf_model, resolve_open_clip

CLIP_FLAG = "--clip-model"
PRETRAINED_FLAG = "--clip-pretrained"


class LoadImage:
    """Picklable image loader for DataLoader workers: open, convert to RGB, apply the model's transform."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, path: str):
        from PIL import Image

        with Image.open(path) as im:
            return self.transform(im.convert("RGB"))


@dataclass
class ClipBackend:
    """A loaded CLIP: normalised image/text embeddings, the image transform, and the text window."""

    model: Any
    tokenizer: Any
    image_transform: Callable
    context_length: int
    device: str
    kind: str  # "open_clip" or "hf"

    def encode_images(self, pixels):
        import torch.nn.functional as F

        pixels = pixels.to(self.device, non_blocking=True)
        if self.kind == "open_clip":
            feats = self.model.encode_image(pixels)
        else:
            feats = _features(self.model.get_image_features(pixel_values=pixels))
        return F.normalize(feats.float(), dim=-1)

    def embed_dim(self) -> int:
        """Width of the joint embedding space (from a one-token text encode, cached)."""
        if not hasattr(self, "_dim"):
            import torch

            with torch.inference_mode():
                self._dim = int(self.encode_texts(["a"]).shape[-1])
        return self._dim

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text needs including start/end markers (to count truncations)."""
        if self.kind == "open_clip" and hasattr(self.tokenizer, "encode"):
            return [len(self.tokenizer.encode(t)) + 2 for t in texts]
        if self.kind == "hf":
            return [len(x) for x in self.tokenizer(texts, truncation=False)["input_ids"]]
        return [0] * len(texts)

    def encode_texts(self, texts: list[str]):
        import torch.nn.functional as F

        if self.kind == "open_clip":
            tokens = self.tokenizer(texts).to(self.device, non_blocking=True)
            feats = self.model.encode_text(tokens)
        else:
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.context_length,
                                 return_tensors="pt").to(self.device)
            feats = _features(self.model.get_text_features(**enc))
        return F.normalize(feats.float(), dim=-1)


def _features(out):
    """transformers 5 returns a model output from get_*_features; 4.x returned the projected tensor."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


@functools.lru_cache(maxsize=4)
def load_clip(model: str, pretrained: str | None, device: str) -> ClipBackend:
    """Load a CLIP once per (spec, device). `model` is an open_clip name / local-dir: / hf-hub:, or hf:ID|DIR."""
    if model.startswith("hf:"):
        return _load_hf(model[3:], device)
    import open_clip

    name, weights = resolve_open_clip(model, pretrained, flag=CLIP_FLAG, pretrained_flag=PRETRAINED_FLAG)
    with loading(model, CLIP_FLAG):
        net, _, transform = open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    net.eval().requires_grad_(False)
    ctx = int(getattr(tokenizer, "context_length", 0) or getattr(net, "context_length", 77))
    return ClipBackend(net, tokenizer, transform, ctx, device, "open_clip")


class _HFImageTransform:
    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image):
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def _load_hf(ref: str, device: str) -> ClipBackend:
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    path = resolve_hf_model(ref, flag=CLIP_FLAG)
    with loading(ref, CLIP_FLAG):
        net = CLIPModel.from_pretrained(path, use_safetensors=True).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path)
    net.eval().requires_grad_(False)
    ctx = int(net.config.text_config.max_position_embeddings)
    return ClipBackend(net, tokenizer, _HFImageTransform(processor), ctx, device, "hf")


def clip_image_key(model: str, pretrained: str | None) -> str:
    """Preprocess key: metrics using the same CLIP share one decoding pass."""
    return f"clip-image:{model}:{pretrained}:{os.path.abspath(model) if os.path.exists(model) else ''}"
