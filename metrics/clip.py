"""`clip`: image-text alignment as 100 x cosine, the InstructionGPT-4 way (sentence-averaged text embedding)."""
from __future__ import annotations

from typing import Any

import numpy as np

from selector.core.metric_api import Batch, Metric, Scored
from metrics.clip_models import LoadImage, clip_image_key, load_clip
from selector.core.resolve import spec_fingerprint
from metrics.registry import register

DEFAULT_CLIP = "ViT-bigG-14"
DEFAULT_PRETRAINED = "laion2b_s39b_b160k"
TEXT_MODES = ("sentences", "truncate")


def split_sentences(text: str, max_sentences: int = 10) -> list[str]:
    """Sentences of `text` split on '.', empty pieces dropped, the first `max_sentences` kept (InstructionGPT-4)."""
    return [s.strip() for s in (text or "").split(".") if s.strip()][:max_sentences]


def segment_mean(values, owners, n: int):
    """Mean of the rows of `values` that belong to each of `n` owners (rows grouped by `owners`)."""
    import torch

    idx = torch.as_tensor(owners, device=values.device)
    sums = torch.zeros(n, values.shape[1], device=values.device, dtype=values.dtype).index_add_(0, idx, values)
    counts = torch.bincount(idx, minlength=n).clamp(min=1).to(values.dtype)
    return sums / counts[:, None]


class _ClipBase(Metric):
    needs = frozenset({"text", "image"})

    def __init__(self, model: str = DEFAULT_CLIP, pretrained: str | None = DEFAULT_PRETRAINED,
                 column: str | None = None):
        random_init = pretrained is None or str(pretrained).lower() in ("none", "random", "")
        self.model = model
        self.pretrained = None if random_init or model.startswith(("local-dir:", "hf-hub:", "hf:")) else pretrained
        self._column = column
        self.backend = None
        self._truncated = 0

    @property
    def column(self) -> str:
        return self._column or self.name

    def setup(self, device: str = "cpu") -> None:
        self.backend = load_clip(self.model, self.pretrained, device)

    def preprocessor(self):
        return LoadImage(self.backend.image_transform)

    def preprocess(self, image_path: str):
        return self.preprocessor()(image_path)

    def image_transform(self):
        return self.backend.image_transform

    def preprocess_key(self) -> str:
        return clip_image_key(self.model, self.pretrained)

    def stats(self) -> dict[str, Any]:
        return {"texts_truncated": self._truncated}

    def _image_embeddings(self, batch: Batch):
        import torch

        if not isinstance(batch.images, torch.Tensor):  # no image of the batch could be decoded
            return torch.full((len(batch), self.backend.embed_dim()), float("nan"), device=self.backend.device)
        return self.backend.encode_images(batch.images)

    @staticmethod
    def _image_reasons(batch: Batch) -> list[str | None]:
        return list(batch.image_errors) if batch.image_errors is not None else [None] * len(batch)


@register
class ClipMetric(_ClipBase):
    """100 x cos(image, text). Text mode "sentences" (default): split the answer on '.', keep <= `max_sentences`,
    average the L2-normalised sentence embeddings (no renormalisation, as in InstructionGPT-4), which sidesteps
    CLIP's 77-token window. Mode "truncate": the whole answer, truncated to the window (counted in stats)."""

    name = "clip"

    def __init__(self, model: str = DEFAULT_CLIP, pretrained: str | None = DEFAULT_PRETRAINED,
                 text_mode: str = "sentences", max_sentences: int = 10, column: str | None = None):
        super().__init__(model, pretrained, column)
        if text_mode not in TEXT_MODES:
            raise ValueError(f"clip text_mode must be one of {TEXT_MODES}, got {text_mode!r}")
        self.text_mode, self.max_sentences = text_mode, int(max_sentences)

    def config(self) -> dict[str, Any]:
        return {**spec_fingerprint(self.model, self.pretrained), "text_mode": self.text_mode,
                "max_sentences": self.max_sentences}

    def score(self, batch: Batch) -> Scored:
        reasons = self._image_reasons(batch)
        texts, owners = [], []
        for i, answer in enumerate(batch.answers):
            pieces = split_sentences(answer, self.max_sentences) if self.text_mode == "sentences" \
                else ([answer.strip()] if answer and answer.strip() else [])
            if not pieces:
                reasons[i] = reasons[i] or "empty answer"
                pieces = [""]  # keeps shapes simple; the score is masked below
            texts += pieces
            owners += [i] * len(pieces)
        self._truncated += sum(c > self.backend.context_length for c in self.backend.count_tokens(texts))
        img = self._image_embeddings(batch)
        txt = segment_mean(self.backend.encode_texts(texts), owners, len(batch))
        values = (100.0 * (img * txt).sum(-1)).float().cpu().numpy().astype(np.float64)
        values[[r is not None for r in reasons]] = np.nan
        return Scored(values, reasons)
