"""The demo's stage-1 model: a tiny LLaVA trained fully on DigitsVQA's clean `pretrain.jsonl` (MiniGPT-4's stage 1).

Stage 1 is deliberately short: the base model answers in the right format but still misreads many digits, so a
stage-2 LoRA run on a good subset has room to show an improvement (and a bad subset room to show none). Stage 1
takes a few minutes on two CPU cores.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from finetune.config import FinetuneConfig
from selector.core.errors import MmselectError
from selector.core.io import atomic_write

SPLITS = ("pretrain.jsonl", "train.jsonl", "val.jsonl", "test.jsonl")


@dataclass(frozen=True)
class Stage1Settings:
    """Stage 1 as in MiniGPT-4: the vision encoder stays frozen (here at its random init, a fixed random-feature
    extractor); the projector and the whole language model train. A constant learning rate for 7 epochs stops in
    the steep part of the learning curve (test accuracy about 35-45%), where a stage-2 subset can still show."""

    epochs: float = 7.0
    batch_size: int = 16
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    scheduler: str = "constant_with_warmup"
    freeze_vision: bool = True


STAGE1 = Stage1Settings()

# Bump when the build changes in a way the settings do not show (architecture, tokenizer, training loop), so that
# cached stage-1 models made by the old recipe are rebuilt instead of silently reused.
RECIPE = "tiny-llava-stage1/v2"
MARKER = "stage1.json"


def stage1_fingerprint(data_dir: str | Path, *, seed: int = 0, settings: Stage1Settings = STAGE1) -> dict:
    """What a stage-1 build depends on: recipe version, seed, settings and the content of every split it reads
    (pretrain trains it, val evaluates it, all splits make the vocabulary)."""
    data_dir = Path(data_dir)
    data = {name: hashlib.sha256((data_dir / name).read_bytes()).hexdigest()[:16]
            for name in SPLITS if (data_dir / name).is_file()}
    return {"recipe": RECIPE, "seed": seed, "settings": asdict(settings), "data_sha256": data}


def is_built(out_dir: str | Path, data_dir: str | Path, *, seed: int = 0, settings: Stage1Settings = STAGE1) -> bool:
    """True when `out_dir` holds a finished stage-1 build whose marker records exactly this fingerprint
    (a build from other settings, another recipe or other data is stale)."""
    out_dir = Path(out_dir)
    marker = out_dir / MARKER
    if not (marker.is_file() and (out_dir / "config.json").is_file()):
        return False
    try:
        recorded = json.loads(marker.read_text()).get("fingerprint")
    except ValueError:
        return False
    return recorded == stage1_fingerprint(data_dir, seed=seed, settings=settings)


def build_vlm_base(data_dir: str | Path, out_dir: str | Path, *, seed: int = 0, progress: bool = True,
                   settings: Stage1Settings = STAGE1) -> Path:
    """Build the tiny VLM and train it fully on `data_dir/pretrain.jsonl`; saved as an HF folder at `out_dir`.

    Skips the work only when `out_dir` holds a finished build with the same fingerprint (recipe, seed, settings,
    data; see `is_built`); a stale build is replaced. The vocabulary comes from every DigitsVQA split
    (text only; `truth.jsonl` is not read), so stage 2 never meets unknown words.
    """
    from finetune.trainer import train
    from selector.app.demo.tiny_vlm import build_tiny_vlm_for

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not (data_dir / "pretrain.jsonl").is_file():
        raise MmselectError(f"{data_dir}/pretrain.jsonl not found: build DigitsVQA first (mmselect demo-data)")
    if is_built(out_dir, data_dir, seed=seed, settings=settings):
        return out_dir
    fingerprint = stage1_fingerprint(data_dir, seed=seed, settings=settings)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vlm-base-", dir=out_dir.parent) as tmp:
        init = build_tiny_vlm_for(data_dir, Path(tmp) / "init", seed=seed, splits=SPLITS)
        cfg = FinetuneConfig(model=str(init), data=str(data_dir / "pretrain.jsonl"), out=str(Path(tmp) / "run"),
                             eval_data=str(data_dir / "val.jsonl") if (data_dir / "val.jsonl").is_file() else None,
                             method="full", freeze_vision=settings.freeze_vision, epochs=settings.epochs,
                             batch_size=settings.batch_size, lr=settings.lr, warmup_ratio=settings.warmup_ratio,
                             scheduler=settings.scheduler, max_new_tokens=4,
                             seed=seed, progress=progress, report_to="none", model_flag="--models")
        result = train(cfg)
        built = result.model_path
        atomic_write(built / MARKER, [json.dumps(
            {"fingerprint": fingerprint, "seed": seed, "settings": asdict(settings),
             "data": str(data_dir / "pretrain.jsonl"),
             "val_metrics": result.metrics["eval"], "train_metrics": result.metrics["train"],
             "timings": result.timings}, indent=2).encode()])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.move(str(built), str(out_dir))
    return out_dir
