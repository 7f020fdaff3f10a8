"""The select pipeline's diversity and SemDeDup steps (`mmselect select --diversity / --semdedup / --coincide`).

`prepare` runs between ranking and `select`: it reads the embedding features from the score table, removes SemDeDup's
near-duplicates (they become "not selected", each with the kept record it lost to in the report), and hands
`select` the surviving ranking with a `Diversity` over the same rows. `DiversityStep.finish` maps the selection back
to the valid records, writes the map `OUT.map.png` and returns the report's sections.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.diversity import Diversity
from selector.core.embeddings import embedding_matrix
from selector.core.errors import MmselectError
from selector.core.ranking import Ranking, Selection
from selector.core.semdedup import DedupResult, kmeans_labels, semdedup

__all__ = ["DiversityStep", "feature_columns", "prepare", "summary_line", "MAP_CLUSTERS"]

MAP_CLUSTERS = 10  # k-means clusters for the composition and the map when the ranking has no groups of its own


def feature_columns(config) -> tuple[str, ...]:
    """The embedding columns a run must score besides its metrics (none without a diversity-aware step)."""
    uses = config.diversity is not None or config.semdedup is not None or config.coincide
    return tuple(config.diversity_features) if uses else ()


@dataclass
class DiversityStep:
    ranking: Ranking  # the ranking `select` sees (SemDeDup's survivors)
    groups: np.ndarray | None  # the missing-metric groups of those rows, if any
    k: int
    diversity: Diversity | None
    keep_rows: np.ndarray  # positions in the full ranking of the rows `select` sees
    features: np.ndarray = field(repr=False)
    dedup: DedupResult | None = None

    def expand(self, sel: Selection, full: Ranking) -> Selection:
        """`sel` (over the surviving rows) as a selection over the full ranking."""
        idx = self.keep_rows[sel.indices]
        return Selection(indices=idx, ids=full.ids[idx], scores=full.scores[idx], source=sel.source, budget=sel.budget,
                         quotas=sel.quotas, ranking=full, info=sel.info)

    def finish(self, sel: Selection, full: Ranking, valid: pa.Table, out: Path, config) -> dict:
        """The report's sections (diversity, semdedup, composition by cluster and by source, map), after writing
        `OUT.map.png`. Composition rows are `selector.core.composition`'s, as for `--group-by`."""
        from selector.app.selection_map import record_sources, write_map
        from selector.core.composition import composition

        report: dict = {"features": list(config.diversity_features)}
        if "diversity" in sel.info:
            report["diversity"] = sel.info["diversity"]
        if self.dedup is not None:
            gone = np.flatnonzero(~self.dedup.keep)
            report["semdedup"] = {
                "threshold": self.dedup.threshold, "clusters": int(self.dedup.clusters.max()) + 1,
                "removed": len(gone),
                "lost_to": {str(full.ids[i]): str(full.ids[self.dedup.lost_to[i]]) for i in gone},
            }
        selected = sel.mask(len(full))
        if full.groups is not None:
            clusters, named = np.asarray(full.groups), f"{full.source} groups"
        else:
            clusters, named = kmeans_labels(self.features, MAP_CLUSTERS, config.seed), "k-means clusters"
        sources = record_sources(valid.column("images").to_pylist())
        report["composition_by_cluster"] = {"clusters": named,
                                            "groups": composition(clusters.astype(str), sel.indices)}
        report["composition_by_source"] = {"source": "first folder of the first image path",
                                           "groups": composition(np.array(sources, dtype=object), sel.indices)}
        map_path = Path(f"{out}.map.png")
        write_map(map_path, self.features, clusters, selected, seed=config.seed,
                  title=f"{full.source}: {len(sel)} of {len(full)} records ({named})")
        report["map"] = str(map_path)
        return report


def _take(ranking: Ranking, rows: np.ndarray) -> Ranking:
    return Ranking(ranking.ids[rows], ranking.scores[rows], None if ranking.groups is None else ranking.groups[rows],
                   ranking.source, dict(ranking.meta), ranking.group_weights)


def prepare(ranking: Ranking, groups: np.ndarray | None, k: int, config, scores: pa.Table) -> DiversityStep | None:
    """The rows and the diversity `select` should use, or None when the run has no diversity-aware step."""
    if not feature_columns(config):
        return None
    features = embedding_matrix(scores, config.diversity_features)
    rows = np.arange(len(ranking))
    dedup = None
    if config.semdedup is not None:
        dedup = semdedup(features, config.semdedup, clusters=config.clusters, seed=config.seed,
                         order=ranking.order(config.seed))
        rows = np.flatnonzero(dedup.keep)
        if len(rows) < k and not config.allow_short:
            raise MmselectError(f"--semdedup {config.semdedup} left {len(rows)} of {len(ranking)} records, fewer "
                                f"than the budget {k}; raise the threshold or pass --allow-short")
    threshold = None if config.diversity == "auto" else config.diversity
    diversity = Diversity(features[rows], threshold) if config.diversity is not None else None
    return DiversityStep(_take(ranking, rows), None if groups is None else groups[rows], min(k, len(rows)),
                         diversity, rows, features, dedup)


def summary_line(report: dict) -> str:
    """One line from the report's sections: what SemDeDup removed, what the diversity pass skipped and filled."""
    parts = []
    if "semdedup" in report:
        d = report["semdedup"]
        parts.append(f"semdedup {d['threshold']:g}: removed {d['removed']} near-duplicates in {d['clusters']} clusters")
    if "diversity" in report:
        d = report["diversity"]
        how = "auto threshold" if d["auto"] else "threshold"
        parts.append(f"diversity ({how} {d['threshold']:g}): skipped {d['skipped']} of {d['examined']} examined, "
                     f"{d['passed']} passed" + (f", {d['filled']} filled from the skipped" if d["filled"] else ""))
    if "map" in report:
        parts.append(f"map {report['map']}")
    return "; ".join(parts)
