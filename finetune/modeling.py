"""Load a vision-language model and its processor, attach LoRA to the language model, and save the result."""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

from finetune.families import family_of
from selector.core.errors import MmselectError
from selector.core.resolve import loading, resolve_hf_model

log = logging.getLogger(__name__)


def load_model(name_or_path: str, *, flag: str = "--model", trust_remote_code: bool = False, dtype=None,
               load_in_4bit: bool = False, max_pixels: int | None = None, image_longest_edge: int | None = None):
    """(model, processor) through AutoModelForImageTextToText / AutoProcessor; local folder -> HF cache -> hub.

    A model that is missing offline raises `ModelNotAvailable` naming it and `flag`. A model this package cannot
    fine-tune (no chat template, a template that cannot render image parts) fails here with one line saying why.
    `load_in_4bit` quantises the language model with bitsandbytes (QLoRA; CUDA only). `max_pixels` /
    `image_longest_edge` cap the image resolution where the family's processor has such a limit.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = resolve_hf_model(name_or_path, flag=flag, trust_remote_code=trust_remote_code)
    kwargs = {"trust_remote_code": trust_remote_code, "use_safetensors": True}  # never pickled weights
    if dtype is not None:
        kwargs["dtype"] = dtype
    if load_in_4bit:
        kwargs.update(quantization_4bit())
    with loading(str(name_or_path), flag):
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    check_chat_template(processor, name_or_path)
    family_of(model).limit_resolution(processor, max_pixels=max_pixels, image_longest_edge=image_longest_edge)
    return model, processor


# Modules kept in full precision under --load-in-4bit: the vision towers and projectors of the families
# (quantising them saves little memory and they are frozen anyway), and the output layer.
KEEP_FULL_PRECISION = ["vision_tower", "vision_model", "visual", "multi_modal_projector", "connector", "lm_head"]


def quantization_4bit() -> dict:
    """from_pretrained arguments for QLoRA (NF4, double quantisation, bf16 compute where supported); a clear error
    without CUDA or bitsandbytes."""
    import torch

    if not torch.cuda.is_available():
        raise MmselectError("--load-in-4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels); none is visible here, "
                            "so drop the flag to train in full precision")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MmselectError("--load-in-4bit needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=KEEP_FULL_PRECISION)
    return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}


def check_chat_template(processor, name: str) -> None:
    """Fine-tuning renders every record through the processor's chat template: refuse a processor without one, or
    one whose template fails on, or drops, an image part."""
    if getattr(processor, "chat_template", None) is None:
        raise MmselectError(f"model {name!r}: its processor has no chat template; fine-tuning renders "
                            "records through it, so use a chat/instruction model or add chat_template.jinja")
    probe = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "A digit."}]}]
    try:
        text = processor.apply_chat_template(probe, tokenize=False)
    except Exception as exc:  # a template error of any kind means no record can be rendered
        raise MmselectError(f"model {name!r}: its chat template cannot render a user turn with an image and text "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    marker = getattr(processor, "image_token", None)
    if marker and marker not in text:
        raise MmselectError(f"model {name!r}: its chat template drops {{'type': 'image'}} parts (no {marker!r} "
                            "in the rendered text), so images would never reach the model")


def stop_token_ids(model, processor) -> set[int]:
    """The tokens that end a generation: the model's generation config's eos ids and the tokenizer's eos."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    if processor.tokenizer.eos_token_id is not None:
        ids.add(processor.tokenizer.eos_token_id)
    return ids


def _find_child(model, attrs: tuple[str, ...]):
    """The first submodule reachable as model.<attr> or model.model.<attr>, with its qualified name."""
    names = {id(m): n for n, m in model.named_modules()}
    for owner in (model, getattr(model, "model", None)):
        for attr in attrs:
            sub = getattr(owner, attr, None) if owner is not None else None
            if sub is not None and id(sub) in names:
                return names[id(sub)], sub
    return None, None


def language_model(model):
    """(qualified name, module) of the model's language model."""
    name, sub = _find_child(model, ("language_model", "text_model"))
    if sub is None:
        sub = model.get_decoder()
        name = {id(m): n for n, m in model.named_modules()}[id(sub)]
    return name, sub


def vision_tower(model):
    """(qualified name, module) of the vision encoder, or (None, None) for a text-only model."""
    return _find_child(model, ("vision_tower", "vision_model", "visual", "vision_encoder"))


def lora_target_names(model, targets: tuple[str, ...]) -> list[str]:
    """Full names of the linear layers inside the language model whose last name part is in `targets`.

    Matching only inside the language model keeps LoRA off the vision tower, whose attention layers share names
    such as q_proj with the language model's.
    """
    import torch.nn as nn

    prefix, lm = language_model(model)
    found = [f"{prefix}.{name}" if prefix else name for name, mod in lm.named_modules()
             if isinstance(mod, nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    if not found:
        raise MmselectError(f"no linear layer named {', '.join(targets)} in the language model ({prefix}); "
                            "pass --target-modules with names from model.named_modules()")
    return found


@contextlib.contextmanager
def _quiet_peft():
    """peft probes transformers' deprecated `is_gradient_checkpointing` alias when it wraps a model; that
    FutureWarning is about the two libraries, nothing a user can act on, so it is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def prepare_model(model, *, method: str, lora_r: int, lora_alpha: int, lora_dropout: float,
                  target_modules: tuple[str, ...], freeze_vision: bool, gradient_checkpointing: bool = False):
    """LoRA on the language model (base weights frozen), or full fine-tuning; the vision tower frozen if asked.

    `gradient_checkpointing` recomputes activations in the backward pass (non-reentrant, so LoRA's gradients flow
    without making the embeddings trainable); a 4-bit model is first prepared for k-bit training."""
    _, tower = vision_tower(model)
    if getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise MmselectError(f"{type(model).__name__} does not support gradient checkpointing; drop the flag")
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 (the older name is deprecated)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                         target_modules=lora_target_names(model, target_modules), bias="none")
        with _quiet_peft():
            model = get_peft_model(model, cfg)  # freezes every base weight
    if tower is not None and freeze_vision:
        for p in tower.parameters():
            p.requires_grad_(False)
    return model


def trainable_summary(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_params": train, "total_params": total}


def save_outputs(model, processor, out: Path, *, method: str, merge: bool) -> tuple[Path | None, Path | None]:
    """LoRA: only the adapter (safetensors) in OUT/adapter, plus OUT/merged when `merge`. Full: OUT/model."""
    adapter_path = model_path = None
    if method == "lora":
        adapter_path = out / "adapter"
        model.save_pretrained(adapter_path, safe_serialization=True)
        processor.save_pretrained(adapter_path)
        if merge:
            model_path = out / "merged"
            merged = model.merge_and_unload()
            merged.save_pretrained(model_path, safe_serialization=True)
            processor.save_pretrained(model_path)
    else:
        model_path = out / "model"
        model.save_pretrained(model_path, safe_serialization=True)
        processor.save_pretrained(model_path)
    return adapter_path, model_path


def load_with_adapter(name_or_path: str, adapter: str | Path | None = None, *, flag: str = "--model",
                      trust_remote_code: bool = False, trainable: bool = False, **load_kwargs):
    """(model, processor) of a base model with an optional LoRA adapter folder applied (for evaluation; with
    `trainable`, the adapter's weights require gradients, for per-sample gradients)."""
    model, processor = load_model(name_or_path, flag=flag, trust_remote_code=trust_remote_code, **load_kwargs)
    if adapter is not None:
        from peft import PeftModel

        with _quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    return model, processor
