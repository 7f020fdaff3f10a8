"""The `mmselect demo` loop on DigitsVQA, as a library call: build data, score, select, and measure the selection.

`truth.jsonl` is read here ONLY to report how clean a selection is; no metric or ranker ever sees it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DemoConfig:
    cache: Path
    budget: int = 200
    seed: int = 0
    noise: float = 0.4
    progress: bool = True


def build_data(config: DemoConfig) -> Path:
    """DigitsVQA under CACHE/digitsvqa-noise{noise}-seed{seed}, built once (meta.json marks a finished build)."""
    from selector.demo_data import DigitsVQAConfig, build_digits_vqa

    out = Path(config.cache) / f"digitsvqa-noise{config.noise:g}-seed{config.seed}"
    if not (out / "meta.json").exists():
        build_digits_vqa(out, DigitsVQAConfig(noise=config.noise, seed=config.seed))
    return out


def clean_share(ids, truth: dict[str, dict]) -> float:
    """Share of `ids` that truth.jsonl marks clean (for reporting only)."""
    ids = [str(i) for i in ids]
    return float(np.mean([truth[i]["clean"] for i in ids])) if ids else float("nan")


def run_minimal(config: DemoConfig, print_fn=print) -> dict:
    """Build DigitsVQA, select `budget` train records by answer length, and report the clean share."""
    from selector.demo_data import load_truth
    from selector.pipeline import SelectConfig, run_select

    data = build_data(config)
    truth = load_truth(data / "truth.jsonl")
    out_dir = Path(config.cache) / "runs" / f"minimal-seed{config.seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    result = run_select(SelectConfig(input=data / "train.jsonl", out=out_dir / "selected-length.jsonl",
                                     budget=config.budget, images=data, metrics=("length",), seed=config.seed,
                                     progress=config.progress))
    pool_share = clean_share(truth.keys(), truth)
    valid_share = clean_share(result.records.valid()["id"], truth)
    sel_share = clean_share(result.selection.ids, truth)
    print_fn(result.accounting.line())
    print_fn(f"clean share: pool {pool_share:.3f} (valid records {valid_share:.3f}), "
             f"selected by length {sel_share:.3f}  ({result.out})")
    return {"accounting": result.accounting, "pool_clean": pool_share, "valid_clean": valid_share,
            "selected_clean": sel_share}
