"""A CLIP that knows digits: a small open_clip model trained on DigitsVQA's clean `pretrain.jsonl` with open_clip's
own contrastive loss, saved in open_clip's local-dir layout so `--clip-model local-dir:DIR` loads it through the real
loader. Minutes on a CPU; the `clip` metric then carries real signal offline."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selector.core.io import atomic_path, atomic_write
from selector.core.records import read_records

log = logging.getLogger(__name__)

WEIGHTS = "open_clip_model.safetensors"
CONFIG = "open_clip_config.json"
INFO = "train_info.json"
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class DemoClipConfig:
    """Model size and training schedule (defaults: about a minute or two on 2 CPU cores)."""

    image_size: int = 32
    patch_size: int = 8
    width: int = 128
    layers: int = 3
    text_width: int = 128
    text_layers: int = 2
    context_length: int = 24
    embed_dim: int = 64
    epochs: int = 40
    batch_size: int = 100
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0


def model_cfg(c: DemoClipConfig) -> dict[str, Any]:
    """open_clip's `model_cfg` for the demo architecture (a custom config, not a built-in name)."""
    return {
        "embed_dim": c.embed_dim,
        "vision_cfg": {"image_size": c.image_size, "patch_size": c.patch_size, "width": c.width,
                       "layers": c.layers, "head_width": 32, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": c.context_length, "vocab_size": 49408, "width": c.text_width,
                     "heads": c.text_width // 32, "layers": c.text_layers, "mlp_ratio": 2.0},
    }


def _load_pairs(data_dir: Path, image_size: int) -> tuple[np.ndarray, list[str]]:
    """Images (n, 3, H, W float in [0, 1]) and answers of the valid records of pretrain.jsonl."""
    from PIL import Image

    records = read_records(data_dir / "pretrain.jsonl", images=data_dir, workers=1)
    valid = records.valid()
    root = Path(records.images_root or data_dir)
    images, answers = [], []
    for ims, ans in zip(valid["images"], valid["answer"]):
        if not ims:
            continue
        with Image.open(root / ims[0]) as im:
            im = im.convert("RGB").resize((image_size, image_size), Image.BICUBIC)
            images.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        answers.append(ans)
    return np.stack(images), answers


def _fingerprint(data_dir: Path, config: DemoClipConfig) -> dict[str, Any]:
    import hashlib

    digest = hashlib.sha256((data_dir / "pretrain.jsonl").read_bytes()).hexdigest()[:16]
    return {"pretrain_sha256": digest, "config": asdict(config)}


def is_built(out: Path, data_dir: Path, config: DemoClipConfig = DemoClipConfig()) -> bool:
    info = out / INFO
    if not ((out / CONFIG).is_file() and (out / WEIGHTS).is_file() and info.is_file()):
        return False
    try:
        return json.loads(info.read_text()).get("fingerprint") == _fingerprint(data_dir, config)
    except ValueError:
        return False


def train_demo_clip(data_dir: str | Path, out: str | Path, config: DemoClipConfig = DemoClipConfig(), *,
                    progress: bool = True) -> Path:
    """Train the demo CLIP on `data_dir/pretrain.jsonl` and save it to `out` (open_clip local-dir layout).

    Each step pairs every image with one randomly drawn sentence of its answer (the metric scores sentences),
    with small random shifts of the image as augmentation.
    """
    import torch
    import torch.nn.functional as F
    from open_clip import CLIP, get_tokenizer
    from open_clip.loss import ClipLoss
    from safetensors.torch import save_file
    from selector.core.progress import progress_bar

    from metrics.clip import split_sentences

    data_dir, out = Path(data_dir), Path(out)
    t0 = time.perf_counter()
    images, answers = _load_pairs(data_dir, config.image_size)
    sentences = [split_sentences(a) or [a] for a in answers]
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x_all = (torch.from_numpy(images) - mean) / std

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    cfg = model_cfg(config)
    model = CLIP(**cfg)
    tokenizer = get_tokenizer("ViT-B-32", context_length=config.context_length)  # the standard CLIP BPE
    token_cache = {s: tokenizer([s])[0] for ss in sentences for s in ss}
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(answers)
    steps_per_epoch = max(1, n // config.batch_size)
    total = config.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.1)
    model.train()
    bar = progress_bar(total=total, desc="train demo CLIP", unit="step", disable=not progress)
    last = float("nan")
    for epoch in range(config.epochs):
        if epoch % 10 == 0 and epoch:
            log.info("demo CLIP epoch %d/%d, loss %.3f, %.0f s", epoch, config.epochs, last, time.perf_counter() - t0)
        order = torch.randperm(n, generator=gen)
        for s in range(steps_per_epoch):
            idx = order[s * config.batch_size:(s + 1) * config.batch_size]
            x = x_all[idx]
            shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            texts = torch.stack([token_cache[sentences[i][rng.integers(len(sentences[i]))]] for i in idx.tolist()])
            img_f, txt_f, scale = model(x, texts)
            loss = loss_fn(F.normalize(img_f, dim=-1), F.normalize(txt_f, dim=-1), scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{last:.3f}")
    bar.close()

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    oc_config = {"model_cfg": cfg,
                 "preprocess_cfg": {"size": config.image_size, "mean": list(MEAN), "std": list(STD),
                                    "interpolation": "bicubic", "resize_mode": "shortest"}}
    atomic_write(out / CONFIG, [json.dumps(oc_config, indent=2).encode()])
    info = {"fingerprint": _fingerprint(data_dir, config), "pairs": n, "steps": total, "final_loss": last,
            "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(out / INFO, [json.dumps(info, indent=2).encode()])
    log.info("demo CLIP: %d pairs, %d steps, final loss %.3f, %.0f s -> %s", n, total, last, info["seconds"], out)
    return out
