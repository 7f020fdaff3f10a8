"""Per-sample scorers over the selector's fitted features: the attention network, the InstructMining linear fit, or
one metric alone. Model choice (`selector.learned.choice`) decides which one a trained selector holds; each saves
itself into the selector folder and loads back from it."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class InferenceConfig:
    subset_size: int = 40  # context size at inference: the training subsets' size
    passes: int = 8        # random partitions averaged per sample
    seed: int = 0


class NetworkScorer:
    """The attention network (or its ensemble), each sample scored in random chunks like the training subsets."""

    kind = "network"

    def __init__(self, model, inference: InferenceConfig = InferenceConfig()):
        self.model, self.inference = model, inference

    def predict(self, x: np.ndarray) -> np.ndarray:
        from selector.learned.network import score_pool

        i = self.inference
        return score_pool(self.model, x, i.subset_size, i.passes, i.seed)

    def describe(self) -> str:
        members = len(getattr(self.model, "members", [self.model]))
        return f"attention network ({members} member{'s' if members > 1 else ''})"

    def save(self, out_dir: Path, extra: dict) -> None:
        from selector.learned.network import save_network

        save_network(self.model, out_dir, {"inference": asdict(self.inference), **extra})

    @classmethod
    def load(cls, path: Path, spec: dict) -> "NetworkScorer":
        from selector.learned.network import load_network

        model, meta = load_network(path)
        return cls(model, InferenceConfig(**meta.get("inference", {})))

    def spec(self) -> dict:
        return {}


class LinearScorer:
    """InstructMining: ridge from a subset's mean features to its label. Linear, so it scores one sample as w . x + b."""

    kind = "linear"

    def __init__(self, coef: np.ndarray | None = None, intercept: float = 0.0, alpha: float = 1.0):
        self.coef = None if coef is None else np.asarray(coef, dtype=np.float64)
        self.intercept, self.alpha = float(intercept), alpha

    def fit(self, subset_features: list[np.ndarray], labels: np.ndarray) -> "LinearScorer":
        from sklearn.linear_model import Ridge

        x = np.stack([f.mean(axis=0) for f in subset_features]).astype(np.float64)
        model = Ridge(alpha=self.alpha).fit(x, np.asarray(labels, dtype=np.float64))
        self.coef, self.intercept = model.coef_.astype(np.float64), float(model.intercept_)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("LinearScorer.predict called before fit")
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept

    def describe(self) -> str:
        return "linear fit (InstructMining ridge)"

    def spec(self) -> dict:
        return {"alpha": self.alpha, "coef": self.coef.tolist(), "intercept": self.intercept}

    def save(self, out_dir: Path, extra: dict) -> None:
        """Everything lives in the selector manifest (`spec`)."""

    @classmethod
    def load(cls, path: Path, spec: dict) -> "LinearScorer":
        return cls(spec["coef"], spec["intercept"], spec.get("alpha", 1.0))


class MetricScorer:
    """One metric alone: the label's straight-line fit on the subset mean of that (normalised) metric, so its sign
    says whether more of the metric is better."""

    kind = "metric"

    def __init__(self, name: str, index: int, slope: float = 1.0, intercept: float = 0.0):
        self.name, self.index, self.slope, self.intercept = name, int(index), float(slope), float(intercept)

    def fit(self, subset_features: list[np.ndarray], labels: np.ndarray) -> "MetricScorer":
        x = np.array([f[:, self.index].mean() for f in subset_features], dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if np.ptp(x) > 0:
            self.slope, self.intercept = (float(v) for v in np.polyfit(x, y, 1))
        else:
            self.slope, self.intercept = 0.0, float(y.mean())
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=np.float64)[:, self.index] + self.intercept

    def describe(self) -> str:
        return f"single metric {self.name!r} ({'higher' if self.slope >= 0 else 'lower'} is better)"

    def spec(self) -> dict:
        return {"metric": self.name, "index": self.index, "slope": self.slope, "intercept": self.intercept}

    def save(self, out_dir: Path, extra: dict) -> None:
        """Everything lives in the selector manifest (`spec`)."""

    @classmethod
    def load(cls, path: Path, spec: dict) -> "MetricScorer":
        return cls(spec["metric"], spec["index"], spec["slope"], spec["intercept"])


SCORERS = {c.kind: c for c in (NetworkScorer, LinearScorer, MetricScorer)}


def load_scorer(path: Path, manifest: dict):
    kind = manifest.get("kind")
    if kind not in SCORERS:
        raise ValueError(f"unknown scorer kind {kind!r} in {path}; known: {', '.join(SCORERS)}")
    return SCORERS[kind].load(Path(path), manifest.get("spec", {}))
