"""`LearnedSelector`: a trained selector (fitted features + the scorer that model choice kept + cluster settings)
as a Ranker.

A selector folder holds `features.json` (the fitted normaliser and PCA: the same transform as in training), the
scorer's own files (the network's `selector.safetensors` + `network.json`; the linear and single-metric scorers live
in the manifest), and `selector.json`, the manifest, written LAST: which scorer, why (the CV table), the label
signal test, and the settings. A folder without a manifest is not a selector (a training run that refused writes
`refused.json` instead). Folders saved before manifests existed hold a network and still load.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.errors import MmselectError
from selector.learned.features import FeatureTransform
from selector.learned.final import ClusterConfig, cluster_groups
from selector.learned.scorers import InferenceConfig, NetworkScorer, load_scorer
from selector.core.ranking import Ranking
from selector.core.strict_json import dumps

__all__ = ["LearnedSelector", "InferenceConfig", "cluster_groups", "MANIFEST", "REFUSED"]

log = logging.getLogger(__name__)

MANIFEST = "selector.json"
REFUSED = "refused.json"
FORMAT = 2  # selector folder layout version (1: network only, no manifest)


class LearnedSelector:
    """Rank a score table with a trained selector: higher predicted per-sample quality = keep."""

    def __init__(self, features: FeatureTransform, scorer, clusters: ClusterConfig | None = ClusterConfig(),
                 meta: dict | None = None, source: str = "learned-selector"):
        self.features = features
        self.scorer = scorer
        self.clusters = clusters
        self.meta = meta or {}
        self.source = source

    @property
    def kind(self) -> str:
        return self.scorer.kind

    def describe(self) -> str:
        """One line: which model ranks, and why it was chosen."""
        why = self.meta.get("choice", {}).get("why")
        return f"{self.scorer.describe()}" + (f", chosen by cross-validation: {why}" if why else "")

    def predict(self, table: pa.Table) -> np.ndarray:
        return self.scorer.predict(self.features.transform(table))

    def rank(self, table: pa.Table) -> Ranking:
        scores = self.predict(table)
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        groups = cluster_groups(table, self.features.config.image_embedding, self.clusters)
        return Ranking(ids=ids, scores=scores, groups=groups,
                       source=self.source, meta={"model": self.kind, "imputed": dict(self.features.last_imputed)})

    def manifest(self) -> dict:
        return {"format": FORMAT, "kind": self.kind, "source": self.source, "spec": self.scorer.spec(),
                "clusters": asdict(self.clusters) if self.clusters else None,
                "trained_on": self.features.metric_names, **self.meta}

    def save(self, out_dir: str | Path) -> Path:
        """Features and scorer files first, the manifest last: a folder with a manifest is a complete selector."""
        from selector.core.io import atomic_write

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST).unlink(missing_ok=True)
        (out_dir / REFUSED).unlink(missing_ok=True)
        self.features.save(out_dir / "features.json")
        self.scorer.save(out_dir, {"clusters": asdict(self.clusters) if self.clusters else None})
        atomic_write(out_dir / MANIFEST, [dumps(self.manifest())])
        return out_dir

    @classmethod
    def load(cls, path: str | Path) -> "LearnedSelector":
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            if (path / REFUSED).is_file():
                reason = json.loads((path / REFUSED).read_text()).get("reason", "see refused.json")
                raise MmselectError(f"{path} holds no selector: its training refused ({reason})")
            if (path / "selector.safetensors").is_file() and (path / "features.json").is_file():
                return cls._load_legacy(path)
            raise MmselectError(f"{path} is not a trained selector (no {MANIFEST}); train one with "
                                f"`mmselect train-selector --out {path}`")
        try:
            manifest = json.loads(manifest_path.read_text())
            scorer = load_scorer(path, manifest)
            features = FeatureTransform.load(path / "features.json")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MmselectError(f"{path} is a damaged selector folder ({exc}); train it again") from None
        clusters = manifest.get("clusters")
        meta = {k: v for k, v in manifest.items()
                if k not in ("format", "kind", "source", "spec", "clusters", "trained_on")}
        return cls(features, scorer, ClusterConfig(**clusters) if clusters else None, meta,
                   manifest.get("source", "learned-selector"))

    @classmethod
    def _load_legacy(cls, path: Path) -> "LearnedSelector":
        log.warning("%s was saved by an older mmselect (a network without model choice or a label signal test); "
                    "retrain it to get both", path)
        scorer = NetworkScorer.load(path, {})
        meta = json.loads((path / "network.json").read_text())
        clusters = meta.get("clusters")
        return cls(FeatureTransform.load(path / "features.json"), scorer,
                   ClusterConfig(**clusters) if clusters else None)
