"""What a diversity-aware selection looks like: each record's source (for the composition by source, counted by
`selector.core.composition`), and a 2-D map of the pool against the selection (`OUT.map.png`, beside the selection).

The map projects the embedding features on their first two principal components (UMAP when `umap-learn` is
installed) and colours points by cluster: the pool on the left, the selection on the right, over the pool in grey. Records without a usable vector
are left out of the map and counted in its title.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from selector.core.embeddings import usable_rows
from selector.core.io import atomic_path

__all__ = ["record_sources", "write_map", "MAX_POINTS", "TOP_CLUSTERS"]

MAX_POINTS = 20000  # pool points drawn (a seeded sample beyond this); every selected point is drawn
TOP_CLUSTERS = 10  # clusters with their own colour; the rest are drawn as "other"


def record_sources(images: list) -> list[str]:
    """A record's source: the first folder of its first image path (LLaVA-665K's coco/, gqa/, ocr_vqa/, ...),
    "(images root)" for an image at the root, "(text only)" without an image."""
    out = []
    for paths in images:
        if not paths:
            out.append("(text only)")
            continue
        parts = Path(str(paths[0])).parts
        out.append(parts[0] if len(parts) > 1 else "(images root)")
    return out


def _project(x: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates: UMAP when installed, else scikit-learn's PCA (not `selector.app.report.stats.project_2d`:
    the report package imports the pipeline, which imports this module)."""
    try:
        import umap  # optional
    except ImportError:
        from sklearn.decomposition import PCA

        if len(x) < 2 or x.shape[1] < 2:
            return np.column_stack([x[:, :1].sum(axis=1), np.zeros(len(x))]), "PCA"
        return PCA(n_components=2, random_state=seed).fit_transform(x), "PCA"
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "UMAP"


def write_map(path: Path, features: np.ndarray, clusters: np.ndarray, selected: np.ndarray, *, seed: int = 0,
              title: str = "") -> Path:
    """Write the pool-vs-selection map of `features` (rows = the pool) coloured by `clusters` to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = np.flatnonzero(usable_rows(features))
    rng = np.random.default_rng(seed)
    chosen = ok[selected[ok]]
    rest = ok[~selected[ok]]
    if len(ok) > MAX_POINTS:
        rest = rng.choice(rest, size=max(0, MAX_POINTS - len(chosen)), replace=False) if len(rest) else rest
    drawn = np.concatenate([rest, chosen]).astype(np.int64)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    if len(drawn):
        xy, how = _project(features[drawn].astype(np.float64), seed)
        where = {int(r): i for i, r in enumerate(drawn)}
        top = [c for c, _ in Counter(clusters[ok].tolist()).most_common(TOP_CLUSTERS)]
        colours = plt.get_cmap("tab10")
        sel_mask = np.array([selected[r] for r in drawn])
        for ax, rows, size in ((axes[0], drawn, 6), (axes[1], drawn[sel_mask], 14)):
            if ax is axes[1]:
                ax.scatter(xy[:, 0], xy[:, 1], s=3, c="0.85", linewidths=0)
            idx = np.array([where[int(r)] for r in rows], dtype=np.int64)
            labs = clusters[rows]
            for j, c in enumerate(top):
                m = labs == c
                ax.scatter(xy[idx[m], 0], xy[idx[m], 1], s=size, color=colours(j % 10), linewidths=0,
                           label=f"cluster {c}")
            other = ~np.isin(labs, top)
            if other.any():
                ax.scatter(xy[idx[other], 0], xy[idx[other], 1], s=size, color="0.5", linewidths=0, label="other")
        axes[0].legend(fontsize=7, markerscale=2, loc="best")
        axes[0].set_xlabel(f"{how} 1")
        axes[1].set_xlabel(f"{how} 1")
        axes[0].set_ylabel(f"{how} 2")
    missing = len(features) - len(ok)
    axes[0].set_title(f"pool ({len(ok)} records" + (f", {missing} without features" if missing else "") + ")")
    axes[1].set_title(f"selection ({int(selected.sum())} records)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
