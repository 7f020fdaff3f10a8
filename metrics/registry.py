"""Metrics registered by name (one `selector.core.registry.Registry`), so the CLI and the score cache can refer to
them as strings.

A new metric is one file, `metrics/<name>.py` with a `Metric` subclass, plus one line below. Entries are lazy
("module:Class"): a length-only run imports only `metrics.length`, and listing the names imports nothing.
`@register` on the class (or `METRICS.add(name, cls)`) registers a metric defined elsewhere.

Metrics that differentiate or evaluate the VLM being fine-tuned (`influence`, `ifd`) live in `finetune/`, next to the
model loading, encoder and training loop they reuse, and implement `selector.core.metric_api.Metric`; they are named
here by reference only, so `metrics` and `finetune` stay independent layers (neither imports the other).
"""
from __future__ import annotations

from typing import Any

from selector.core.metric_api import Metric
from selector.core.registry import Registry

METRICS: Registry[type[Metric]] = Registry("metric")
METRICS.add("length", "metrics.length:LengthMetric")
METRICS.add("clip", "metrics.clip:ClipMetric")
METRICS.add("embed-image", "metrics.embed:EmbedImageMetric")
METRICS.add("embed-text", "metrics.embed:EmbedTextMetric")
METRICS.add("reward", "metrics.reward:RewardMetric")
METRICS.add("judge", "metrics.judge:JudgeMetric")
METRICS.add("influence", "finetune.influence:InfluenceMetric")
METRICS.add("ifd", "finetune.ifd:IFDMetric")

# Scoring engines: ScoreJob -> ScoreResult. One file plus one line each.
ENGINES: Registry = Registry("scoring engine")
ENGINES.add("local", "metrics.score_job:run_score_job")
ENGINES.add("ray", "metrics.ray_engine:run_ray_job")


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: register `cls` under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    METRICS.add(cls.name, cls)
    return cls


def available() -> list[str]:
    return sorted(METRICS.names())


def metric_class(name: str) -> type[Metric]:
    """The class registered as `name` (imports just its module); `UnknownName` lists the known metrics."""
    return METRICS.get(name)


def build(name: str, **params: Any) -> Metric:
    return metric_class(name)(**params)


# name -> defining module (read-only view of the registry, for tools that check where each metric lives)
BUILTIN: dict[str, str] = {name: METRICS.reference(name).split(":")[0] for name in METRICS.names()}
