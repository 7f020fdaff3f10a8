"""`reward`: the raw logit of an HF sequence-classification reward model on (instruction, answer), as in
InstructionGPT-4 (default `OpenAssistant/reward-model-deberta-v3-large-v2`). Truncation is explicit: pairs longer
than `max_length` are cut (longest side first), flagged per record in `reward__truncated`, and counted in stats."""
from __future__ import annotations

from typing import Any

import numpy as np

from selector.core.metric_api import Batch, Metric, Scored
from selector.core.resolve import spec_fingerprint
from metrics.registry import register
from selector.core.resolve import loading, resolve_hf_model

DEFAULT_REWARD_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"
REWARD_FLAG = "--reward-model"


@register
class RewardMetric(Metric):
    name = "reward"
    needs = frozenset({"text"})

    def __init__(self, model: str = DEFAULT_REWARD_MODEL, max_length: int = 512, label_index: int = 0,
                 trust_remote_code: bool = False, column: str | None = None):
        self.model, self.max_length, self.label_index = model, int(max_length), int(label_index)
        self.trust_remote_code = trust_remote_code
        self._column = column
        self._tok = self._net = self._device = None
        self._truncated = 0
        self._seen = 0

    @property
    def column(self) -> str:
        return self._column or self.name

    def config(self) -> dict[str, Any]:
        return {**spec_fingerprint(self.model, None), "max_length": self.max_length, "label_index": self.label_index}

    def setup(self, device: str = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_hf_model(self.model, flag=REWARD_FLAG, trust_remote_code=self.trust_remote_code)
        with loading(self.model, REWARD_FLAG):
            self._tok = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
            self._net = AutoModelForSequenceClassification.from_pretrained(
                path, trust_remote_code=self.trust_remote_code, use_safetensors=True).to(device).eval()
        labels = int(self._net.config.num_labels)
        if not 0 <= self.label_index < labels:
            raise ValueError(f"reward model {self.model!r} has {labels} outputs; label_index {self.label_index} "
                             "is out of range")
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token or self._tok.unk_token
            self._net.config.pad_token_id = self._tok.pad_token_id
        limit = getattr(self._tok, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < self.max_length:
            self.max_length = limit
        self._device = device

    def stats(self) -> dict[str, Any]:
        return {"truncated": self._truncated, "scored": self._seen, "max_length": self.max_length}

    def score(self, batch: Batch) -> Scored:
        qs = [q or "" for q in batch.instructions]
        ans = [a or "" for a in batch.answers]
        full = self._tok(qs, ans, truncation=False)["input_ids"]
        truncated = [len(x) > self.max_length for x in full]
        self._truncated += sum(truncated)
        self._seen += len(batch)
        enc = self._tok(qs, ans, padding=True, truncation="longest_first", max_length=self.max_length,
                        return_tensors="pt").to(self._device)
        logits = self._net(**enc).logits.float()
        values = logits[:, self.label_index].cpu().numpy().astype(np.float64)
        reasons = [None if a.strip() else "empty answer" for a in ans]
        values[[r is not None for r in reasons]] = np.nan
        return Scored(values, reasons, {"truncated": truncated})
