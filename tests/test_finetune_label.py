"""The label function's learning rate, derived from the base model's width."""
from __future__ import annotations

import pytest

from finetune.label import FinetuneLabel


def _model(tmp_path, hidden: int):
    from transformers import LlamaConfig, LlavaConfig

    text = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                       num_attention_heads=max(1, hidden // 64), vocab_size=100)
    out = tmp_path / f"m{hidden}"
    LlavaConfig(text_config=text.to_dict()).save_pretrained(out)
    return FinetuneLabel(base_model=str(out), eval_data="val.jsonl", work_dir=str(tmp_path / "w"))


@pytest.mark.parametrize("hidden, lr", [(4096, 2e-4), (1024, 8e-4), (128, 3e-3), (16384, 5e-5)])
def test_lr_scales_inversely_with_the_language_models_width(tmp_path, hidden, lr):
    rate, why = _model(tmp_path, hidden).derived_lr()
    assert rate == pytest.approx(lr) and f"hidden size {hidden}" in why


def test_missing_base_model_is_named_with_its_flag(tmp_path):
    from selector.core.errors import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match="--base-model"):
        FinetuneLabel(base_model=str(tmp_path / "nowhere"), eval_data="v", work_dir="w").derived_lr()


def test_a_label_run_needs_a_rate_and_a_known_metric(tmp_path):
    with pytest.raises(ValueError, match="unknown label metric"):
        FinetuneLabel(base_model="m", eval_data="v", work_dir="w", metric="bleu")
    with pytest.raises(ValueError, match="no learning rate"):
        FinetuneLabel(base_model="m", eval_data="v", work_dir="w")(tmp_path / "s.jsonl", None, 0)
