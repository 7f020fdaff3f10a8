"""`ifd`: Cherry LLM's instruction-following difficulty under a base VLM (Li et al., NAACL 2024).

IFD = mean answer-token loss given the instruction and images / mean answer-token loss of the answer alone (an
empty user turn, no image, through the same chat template). Near 0: the prompt all but determines the answer; near 1:
it barely helps; above 1: it hurts (the answer does not fit the prompt).

Which end is kept: `higher_is_better = True`, Cherry's convention (the top IFD samples are the ones worth training
on; they drop IFD > 1 as misaligned, which a user can do with the `ifd` column). On a noisy pool the top end also
holds answers the prompt does not predict at all, so the direction is a choice to measure, not a given.

The records are encoded from the pool file with finetune's encoder (every image and turn, as fine-tuning sees
them); losses are computed per runner batch, so the score cache and progress bar work as for the other metrics.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from selector.core.metric_api import Batch, Metric, Scored

IFD_FLAG = "--ifd-model"


class IFDMetric(Metric):
    name = "ifd"
    needs = frozenset({"text"})  # images come from the pool file, through finetune's encoder
    higher_is_better = True

    def __init__(self, model: str | None = None, pool: str | None = None, images: str | None = None,
                 batch_size: int = 16, max_length: int = 512, progress: bool = True, trust_remote_code: bool = False):
        if not model or not pool:
            from selector.core.errors import SettingsError

            raise SettingsError("metric ifd needs --ifd-model (a base VLM) and the records to score")
        self.model, self.pool, self.images = model, pool, images
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self.progress, self.trust_remote_code = progress, trust_remote_code
        self._net = self._pad = None
        self._cond: dict[str, Any] = {}
        self._plain: dict[str, Any] = {}
        self._reasons: dict[str, str] = {}
        self._over_one = 0

    def config(self) -> dict[str, Any]:
        from selector.core.resolve import spec_fingerprint

        return {**spec_fingerprint(self.model, None), "max_length": self.max_length}

    def stats(self) -> dict[str, Any]:
        return {"ifd_above_1": self._over_one}

    def setup(self, device: str = "cpu") -> None:
        from finetune.data import Encoder, encode_records
        from finetune.modeling import load_model, stop_token_ids

        model, processor = load_model(self.model, flag=IFD_FLAG, trust_remote_code=self.trust_remote_code)
        self._net = model.to(device).eval()
        self._pad = processor.tokenizer.pad_token_id
        stops = stop_token_ids(model, processor)
        pool = encode_records(self.pool, processor, images=self.images, dedup=False, max_length=self.max_length,
                              stop_ids=stops, progress=self.progress and sys.stderr.isatty())
        encoder = Encoder(processor, self.max_length, stops)
        for row in pool.rejected:
            self._reasons[str(row["id"])] = f"ifd: {row['reason']}"
        for ex in pool.examples:
            plain = encoder.encode(ex.id, [("user", ""), ("assistant", ex.answer)], [])
            if isinstance(plain, str):
                self._reasons[str(ex.id)] = f"ifd: answer alone: {plain}"
                continue
            self._cond[str(ex.id)], self._plain[str(ex.id)] = ex, plain

    def score(self, batch: Batch) -> Scored:
        import torch

        from finetune.data import EncodedSet
        from finetune.evaluation import EvalSettings, answer_losses

        values = np.full(len(batch), np.nan)
        reasons: list[str | None] = [None] * len(batch)
        have = [i for i, rid in enumerate(batch.ids) if str(rid) in self._cond]
        for i, rid in enumerate(batch.ids):
            if str(rid) not in self._cond:
                reasons[i] = self._reasons.get(str(rid), "ifd: record not in the pool file")
        if have:
            settings = EvalSettings(batch_size=self.batch_size)
            with torch.no_grad():
                cond = answer_losses(self._net, EncodedSet([self._cond[str(batch.ids[i])] for i in have]), self._pad,
                                     settings)
                plain = answer_losses(self._net, EncodedSet([self._plain[str(batch.ids[i])] for i in have]),
                                      self._pad, settings)
            for i, (sc, nc), (sp, np_) in zip(have, cond, plain):
                if nc == 0 or np_ == 0 or sp <= 0:
                    reasons[i] = "ifd: no answer tokens"
                    continue
                values[i] = (sc / nc) / (sp / np_)
        self._over_one += int(np.nansum(values > 1))
        return Scored(values, reasons)


__all__ = ["IFDMetric"]
