"""Prune an image dataset end to end: load, `reduce` (rank and cut), write the subset file (what `mmselect prune`
runs)."""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selector.core.io import atomic_dir, atomic_write, check_outputs
from selector.core.stratified import Stratified
from vision.data import DataError, dataset_files, image_folder_files, load_dataset, rejected_entries
from vision.prune.cut_choice import CutChoice
from vision.reduce import reduce

__all__ = ["PruneConfig", "PruneResult", "run_prune", "write_subset_tree", "LINKS"]

LINKS = ("symlink", "copy")


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
    stratified: Stratified | CutChoice | None = None  # CCS cut instead of the best scores, or chosen on held-out data
    subset_dir: Path | None = None  # folder datasets: write the kept files here as a class-folder tree
    link: str = "symlink"  # LINKS: how subset_dir holds each kept file
    preset: str | None = None  # the run preset (vision.presets) the settings came from, recorded in OUT

    def __post_init__(self):
        if self.link not in LINKS:
            raise DataError(f"link must be one of {', '.join(LINKS)}, got {self.link!r}")
        if self.subset_dir is not None:
            root = self.folder_root()
            if root is None:
                raise DataError(f"--subset-dir needs a folder dataset (--dataset folder:PATH); {self.dataset} has "
                                "no files to link or copy")
            _check_subset_dir(Path(self.subset_dir), root)

    def folder_root(self) -> Path | None:
        kind, _, arg = self.dataset.partition(":")
        return Path(arg) if kind.lower() == "folder" and arg else None


@dataclass(frozen=True)
class PruneResult:
    out: Path
    kept: int
    total: int
    indices: np.ndarray  # kept positions in the loaded dataset, best first
    stratified: dict | None = None  # what the CCS cut did (its hard-cut share, strata), when it was used
    cut_choice: dict | None = None  # how --stratified auto chose the cut (held-out accuracies), when it was used
    rejected: int = 0  # dataset files the loader could not use (listed in OUT with their reasons)


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def run_prune(config: PruneConfig) -> PruneResult:
    """Rank the whole dataset with `config.method` and keep `config.keep` overall (`reduce` with unit="total"),
    write JSON to `config.out` atomically.

    The file holds: indices (kept positions, best first), ids, every example's score and label (so another budget can
    be cut without rescoring), the class quotas, and the dataset/method/ranker settings.
    """
    check_outputs(dataset_files(config.dataset), [config.out])
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
        "preset": config.preset,
        "total": len(data),
        "indices": sel.indices.tolist(),
        "ids": [int(i) for i in sel.ids],
        "quotas": {str(k): v for k, v in (sel.quotas or {}).items()},
        "scores": [_json_float(s) for s in ranking.scores],
        "labels": data.labels.tolist(),
        "settings": ranking.meta.get("settings", {}),
    }
    root = config.folder_root()
    if root is not None:  # name the files, not only their positions
        _, listed, _ = image_folder_files(root)
        files = [f.relative_to(root).as_posix() for f, _ in listed]
        unread = len(set(files) & {entry for entry, _ in data.rejected})
        if len(files) - unread != len(data):
            raise DataError(f"{root} changed while it was read ({len(files)} files now, {len(data)} loaded, "
                            f"{unread} rejected)")
        doc["root"] = str(root.resolve())
        doc["files"] = [files[int(data.ids[i])] for i in sel.indices.tolist()]
        if config.subset_dir is not None:
            write_subset_tree(root, doc["files"], Path(config.subset_dir), config.link)
            doc["subset_dir"] = str(Path(config.subset_dir).resolve())
    if data.rejected:  # files the loader could not use: each named with its reason, none silently dropped
        doc["rejected"] = rejected_entries(data)
    for key in ("stratified", "cut_choice"):
        if sel.info.get(key):
            doc[key] = sel.info[key]
    out = Path(config.out)
    atomic_write(out, [json.dumps(doc).encode("utf-8"), b"\n"])
    return PruneResult(out=out, kept=len(sel), total=len(data), indices=sel.indices,
                       stratified=sel.info.get("stratified"), cut_choice=sel.info.get("cut_choice"),
                       rejected=len(data.rejected))


def _check_subset_dir(out: Path, root: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--subset-dir {out} exists and is not an empty folder; choose a new folder")
    real_out, real_root = os.path.realpath(out), os.path.realpath(root)
    if real_out == real_root or real_out.startswith(real_root.rstrip(os.sep) + os.sep):
        raise DataError(f"--subset-dir {out} lies inside the dataset {root}: it would become part of it")


def write_subset_tree(root: Path, files: list[str], out: Path, link: str = "symlink") -> Path:
    """The files `files` (paths relative to `root`) as a folder tree under `out`, same relative paths, each a
    symlink to the original (absolute) or a copy. Built in a temp folder beside `out` and renamed into place, so
    an interrupted run leaves no half tree."""
    if link not in LINKS:
        raise DataError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
    _check_subset_dir(out, root)
    with atomic_dir(out) as tmp:
        for rel in files:
            src, dst = (Path(root) / rel).resolve(), tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if link == "symlink":
                os.symlink(src, dst)
            else:
                shutil.copy2(src, dst)
    return out
