"""Condense an image dataset end to end (what `mmselect condense` runs): load and split it, `reduce` the training
split with a condenser, save the synthetic set with its PNG grid, optionally evaluate it with the one protocol
(`vision.evaluate`) and plot a t-SNE of real vs synthetic features, and write the JSON report beside it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selector.core.io import atomic_write, check_outputs
from vision.data import dataset_files, load_dataset, rejected_entries, split
from vision.reduce import reduce

__all__ = ["CondenseJob", "CondenseResult", "run_condense"]

SPLIT = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class CondenseJob:
    dataset: str  # "digits", "folder:PATH", "mnist:ROOT", ...
    method: str  # a condenser (vision.condense.CONDENSERS)
    ipc: int
    out: Path  # the synthetic set (torch file); OUT.png, OUT.json and OUT.tsne.png go beside it
    seed: int = 0
    split_seed: int = 0
    image_size: int | None = None
    channels: int | None = None
    width: int = 128  # ConvNet width and depth of the matching (and convnet evaluation / t-SNE) networks
    depth: int = 3
    device: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # other condenser settings (iterations, init, lr_img, ...)
    eval_models: int = 0  # networks trained on the synthetic set to evaluate it (0: no evaluation)
    eval_epochs: int = 300
    eval_dsa: bool = False
    eval_net: str = "convnet"
    tsne: bool = False
    progress: bool = False
    preset: str | None = None  # the run preset (vision.presets) the settings came from, recorded in the report


@dataclass
class CondenseResult:
    out: Path
    grid: Path
    report_path: Path
    report: dict[str, Any]
    size: int  # synthetic images
    eval_line: str | None = None  # "mean ± std" test accuracy, with evaluation


def _evaluate(job: CondenseJob, reduction, splits) -> tuple[dict, str]:
    from vision.evaluate import EvalConfig, evaluate_reduced

    net_options = {"width": job.width, "depth": job.depth} if job.eval_net.lower().startswith("convnet") else {}
    cfg = EvalConfig(net=job.eval_net, net_options=net_options, models=job.eval_models, epochs=job.eval_epochs,
                     dsa=job.eval_dsa, seed=job.seed, device=job.device, progress=job.progress)
    result = evaluate_reduced(reduction, splits, cfg)
    return result.to_dict(), result.line()


def _tsne(job: CondenseJob, reduction, splits, data) -> Path:
    from vision.condense.plots import save_tsne
    from vision.nets import build_net
    from vision.train import TrainConfig, train

    net = build_net("convnet", data.channels, data.num_classes, data.image_size, seed=job.seed,
                    width=job.width, depth=job.depth)
    net = train(net, splits.train, TrainConfig(epochs=10, seed=job.seed, device=job.device)).net
    return save_tsne(net, splits.train, reduction.as_data(), Path(job.out).with_suffix(".tsne.png"), seed=job.seed,
                     title=f"{job.method} ipc={job.ipc}: real (dots) vs synthetic")


def run_condense(job: CondenseJob) -> CondenseResult:
    from vision.condense.plots import save_grid

    out = Path(job.out)
    check_outputs(dataset_files(job.dataset), [out, out.with_suffix(".png"), out.with_suffix(".json"),
                                              out.with_suffix(".tsne.png")])
    data = load_dataset(job.dataset, size=job.image_size, channels=job.channels)
    splits = split(data, SPLIT, seed=job.split_seed)
    settings = {"progress": job.progress, "device": job.device, "net_options": {"width": job.width,
                                                                                "depth": job.depth}, **job.params}
    reduction = reduce(splits.train, job.ipc, job.method, seed=job.seed, **settings)
    out = Path(job.out)
    reduction.save(out)
    grid = save_grid(reduction.as_data(), out.with_suffix(".png"), title=f"{job.method} ipc={job.ipc} on {data.name}")
    report = {"out": str(out), "grid": str(grid), "dataset": job.dataset, "split_seed": job.split_seed, "preset": job.preset,
              "train_size": len(splits.train), "settings": reduction.settings,
              "final_loss": reduction.history[-1]["loss"] if reduction.history else None}
    if data.rejected:  # dataset files the loader could not use, each with its reason
        report["rejected"] = rejected_entries(data)
    line = None
    if job.eval_models:
        report["eval"], line = _evaluate(job, reduction, splits)
    if job.tsne:
        report["tsne"] = str(_tsne(job, reduction, splits, data))
    report_path = out.with_suffix(".json")
    atomic_write(report_path, [json.dumps(report, indent=2, default=str).encode()])
    return CondenseResult(out, grid, report_path, report, len(reduction), line)
