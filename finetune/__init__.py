"""LoRA fine-tuning and evaluation of vision-language models on instruction files.

    from finetune import FinetuneConfig, train, evaluate
    result = train(FinetuneConfig(model="MODELS/vlm-base", data="selected.jsonl", eval_data="test.jsonl", out="OUT"))
    build_tiny_model("qwen2_vl", "TINY")   # an offline random-weight test model of a family


Heavy modules load on first use, so `import finetune` stays cheap.
"""
from __future__ import annotations

from finetune.config import FinetuneConfig, FinetuneResult

__all__ = ["FinetuneConfig", "FinetuneResult", "train", "evaluate", "build_tiny_model"]


def train(config: FinetuneConfig, eval_cache: dict | None = None) -> FinetuneResult:
    """Fine-tune and evaluate one model (see `finetune.trainer.train`)."""
    from finetune.trainer import train as _train

    return _train(config, eval_cache)


def evaluate(model: str, data: str, **kwargs) -> dict:
    """Evaluate a model, optionally with a LoRA adapter (see `finetune.evaluation.evaluate`)."""
    from finetune.evaluation import evaluate as _evaluate

    return _evaluate(model, data, **kwargs)


def build_tiny_model(family: str, out_dir, **kwargs):
    """A tiny random-weight model of a VLM family, saved to `out_dir` (see `finetune.tiny.build_tiny_model`)."""
    from finetune.tiny import build_tiny_model as _build

    return _build(family, out_dir, **kwargs)
