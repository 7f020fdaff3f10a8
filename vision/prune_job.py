"""Prune an image dataset end to end: load, `reduce` (rank and cut), write the subset file (what `mmselect prune`
runs)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selector.core.io import atomic_write
from selector.core.stratified import Stratified
from vision.data import load_dataset
from vision.reduce import reduce

__all__ = ["PruneConfig", "PruneResult", "run_prune"]


@dataclass(frozen=True)
class PruneConfig:
    dataset: str  # "digits", "folder:PATH", "mnist:ROOT", ...
    method: str
    keep: int | float  # count or fraction
    out: Path
    seed: int = 0
    image_size: int | None = None
    channels: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # ranker and proxy settings but the seed (see build_ranker)
    stratified: Stratified | None = None  # CCS coverage-centric cut instead of the best scores


@dataclass(frozen=True)
class PruneResult:
    out: Path
    kept: int
    total: int
    indices: np.ndarray  # kept positions in the loaded dataset, best first
    stratified: dict | None = None  # what the CCS cut did (its hard-cut share, strata), when it was used


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def run_prune(config: PruneConfig) -> PruneResult:
    """Rank the whole dataset with `config.method` and keep `config.keep` overall (`reduce` with unit="total"),
    write JSON to `config.out` atomically.

    The file holds: indices (kept positions, best first), ids, every example's score and label (so another budget can
    be cut without rescoring), the class quotas, and the dataset/method/ranker settings.
    """
    data = load_dataset(config.dataset, size=config.image_size, channels=config.channels)
    sel = reduce(data, config.keep, config.method, unit="total", seed=config.seed, stratified=config.stratified,
                 **config.params)
    ranking = sel.ranking
    doc = {
        "dataset": config.dataset,
        "dataset_name": data.name,
        "image_shape": [data.channels, data.image_size, int(data.images.shape[3])],
        "classes": list(data.classes),
        "method": ranking.source,
        "direction": "higher score = keep",
        "keep": config.keep,
        "budget": sel.budget,
        "seed": config.seed,
        "total": len(data),
        "indices": sel.indices.tolist(),
        "ids": [int(i) for i in sel.ids],
        "quotas": {str(k): v for k, v in (sel.quotas or {}).items()},
        "scores": [_json_float(s) for s in ranking.scores],
        "labels": data.labels.tolist(),
        "settings": ranking.meta.get("settings", {}),
    }
    if sel.info.get("stratified"):
        doc["stratified"] = sel.info["stratified"]
    out = Path(config.out)
    atomic_write(out, [json.dumps(doc).encode("utf-8"), b"\n"])
    return PruneResult(out=out, kept=len(sel), total=len(data), indices=sel.indices,
                       stratified=sel.info.get("stratified"))
