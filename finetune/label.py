"""The genuine quality label of a subset: LoRA-fine-tune a base model on it and evaluate on held-out data.

`FinetuneLabel` implements the learned selector's label-function protocol (`key` and
`__call__(subset_file, images_root, seed) -> {"label": ...}`) structurally, so the selector never imports this
package and this package never imports the selector.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# Eval metrics where lower is better: negated so that a higher label always means a better subset.
LOSS_METRICS = ("eval_loss", "eval_perplexity")
LABEL_METRICS = ("eval_loss", "eval_perplexity", "exact_match", "contains")


def language_width(model: str) -> int:
    """Hidden size of the model's language model (a VLM's text config, else the model's own)."""
    from transformers import AutoConfig

    from finetune.config import text_width
    from selector.core.errors import ModelNotAvailable

    try:
        config = AutoConfig.from_pretrained(model)
    except OSError as exc:
        raise ModelNotAvailable(model, "--base-model", str(exc).splitlines()[0]) from None
    width = text_width(config)
    if not width:
        raise ValueError(f"{model}: its config names no hidden size; pass the label learning rate explicitly")
    return width


@dataclass(frozen=True)
class FinetuneLabel:
    """LoRA-fine-tune `base_model` on the subset (`finetune.train`), evaluate on `eval_data`, and return the chosen
    evaluation metric as the label. A loss metric needs no generated answers, so generation is skipped for it.

    `lr=None` means "not chosen yet": the selector sets it (`dataclasses.replace(fn, lr=...)`) from `derived_lr` or a
    pilot before any label is computed; calling the function without a learning rate is an error."""

    base_model: str
    eval_data: str
    work_dir: str
    eval_images: str | None = None
    metric: str = "eval_loss"
    epochs: float = 3.0
    batch_size: int = 8
    lr: float | None = None
    lora_r: int = 16
    extra: dict = field(default_factory=dict)  # any other FinetuneConfig fields
    # The encoded eval set, shared by every run of this label function (and its `replace` copies); not a setting.
    eval_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.metric.lstrip("-") not in LABEL_METRICS:
            raise ValueError(f"unknown label metric {self.metric!r}; choose one of {', '.join(LABEL_METRICS)}")

    @property
    def is_loss(self) -> bool:
        return self.metric.lstrip("-") in LOSS_METRICS

    @property
    def key(self) -> str:
        from selector.core.resolve import model_fingerprint

        fields = {k: v for k, v in self.__dict__.items() if k not in ("work_dir", "eval_cache")}
        fields["base_model_sha256"] = model_fingerprint(self.base_model)
        return "finetune-v3:" + json.dumps(fields, sort_keys=True, default=str)

    def derived_lr(self) -> tuple[float, str]:
        """The LoRA rate for this base model, from its language model's width (`finetune.config.lr_for_width`, the
        rule `finetune` uses by default). Returns (rate, how it was derived)."""
        from finetune.config import lr_for_width

        return lr_for_width(language_width(self.base_model))

    def __call__(self, subset_file: Path, images_root: Path | None, seed: int) -> dict:
        from finetune.config import FinetuneConfig
        from finetune.trainer import train

        if self.lr is None:
            raise ValueError("FinetuneLabel has no learning rate: set lr, or let the selector's pilot choose it")
        out = Path(self.work_dir) / f"{Path(subset_file).stem}-seed{seed}-lr{self.lr:g}"
        settings = {"generate": not self.is_loss, **self.extra}
        cfg = FinetuneConfig(model=self.base_model, data=str(subset_file), out=str(out),
                             images=str(images_root) if images_root else None, eval_data=self.eval_data,
                             eval_images=self.eval_images, epochs=self.epochs, batch_size=self.batch_size,
                             lr=self.lr, lora_r=self.lora_r, lora_alpha=2 * self.lora_r, seed=seed,
                             progress=False, report_to="none", overwrite=True, **settings)
        result = train(cfg, self.eval_cache)
        ev = result.metrics.get("eval", {})
        name = self.metric.lstrip("-")
        if name not in ev:
            raise RuntimeError(f"fine-tuning on {subset_file} reported no eval metric {name!r} (got {sorted(ev)}); "
                               f"pass an eval set with short answers or choose --label-metric eval_loss")
        value = float(ev[name])
        negate = self.metric.startswith("-") or self.is_loss
        return {"label": -value if negate else value, "eval": ev, "train_s": result.timings.get("total_s")}
