"""The report's plots, drawn with matplotlib (Agg) into PNG data URIs, one function per kind of chart.

Every chart has axis labels with units, its legend outside the data, and labels that come from records (sources,
rejection reasons) shown as plain text (mathtext off, truncated), so a `$` in a record cannot break a plot.
"""
from __future__ import annotations

import base64
import io
from contextlib import contextmanager

import numpy as np

from selector.app.report.cards import clean_text

DPI = 80
COLOURS = ("#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
LABEL_CHARS = 40
# What a metric's numbers are (the x-axis of its histogram); other metrics are shown as "score".
UNITS = {"length": "characters of answer", "clip": "100 x cosine similarity", "reward": "reward-model logit",
         "judge": "judge score", "ranking score": "combined normalised score"}


def short(label, limit: int = LABEL_CHARS) -> str:
    """A label from data as plain text: control characters replaced, at most `limit` characters."""
    text = clean_text(label, 10 * limit)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@contextmanager
def figure(width: float = 6.4, height: float = 3.0):
    """A figure inside matplotlib's plain-text settings; yields (fig, ax, out) where out[0] becomes the data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"text.parse_math": False, "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False}):
        fig, ax = plt.subplots(figsize=(width, height))
        out: list[str] = []
        try:
            yield fig, ax, out
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
            out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
        finally:
            plt.close(fig)


def _legend_outside(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)


def bars(counts: dict[str, int], xlabel: str, ylabel: str = "") -> str:
    """Horizontal bars, one per label (largest on top)."""
    labels = [short(k) for k in counts]
    values = list(counts.values())
    with figure(6.4, 0.9 + 0.28 * max(len(labels), 1)) as (fig, ax, out):
        y = np.arange(len(labels))[::-1]
        ax.barh(y, values, color=COLOURS[1])
        for yi, v in zip(y, values):
            ax.text(v, yi, f" {v:,}", va="center", fontsize=8)
        ax.set_yticks(y, labels)
        ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        ax.margins(x=0.15)
    return out[0]


def grouped_shares(categories: list[str], series: dict[str, np.ndarray], ylabel: str) -> str:
    """Share of each category (percent of its set) in each series, as grouped horizontal bars."""
    n = max(len(categories), 1)
    with figure(6.4, 0.9 + 0.22 * n * max(len(series), 1) ** 0.5) as (fig, ax, out):
        y = np.arange(len(categories))[::-1]
        h = 0.8 / max(len(series), 1)
        for k, (name, values) in enumerate(series.items()):
            ax.barh(y + 0.4 - h * (k + 0.5), 100 * np.asarray(values), h, label=short(name, 30),
                    color=COLOURS[k % len(COLOURS)])
        ax.set_yticks(y, [short(c) for c in categories])
        ax.set_xlabel("share of the set (%)")
        ax.set_ylabel(ylabel)
        _legend_outside(ax)
    return out[0]


def histograms(metric: str, edges: np.ndarray, series: dict[str, np.ndarray], as_share: bool) -> str:
    """Histograms of one metric over shared bins: counts for a single set, percent of each set for several
    (so a selection of 200 and a pool of 100,000 can be read on one axis)."""
    # A span beyond float64 (scores near +-1.8e308), or values so near it that matplotlib's margins and ticks
    # overflow, cannot be an axis: draw by bin number, label the bins' values.
    with np.errstate(over="ignore"):
        by_bin = not np.isfinite(edges[-1] - edges[0]) or np.abs(edges).max() > np.finfo(np.float64).max / 4
    with figure(4.6, 2.6) as (fig, ax, out):
        x, width = (np.arange(len(edges) - 1), 1.0) if by_bin else (edges[:-1], np.diff(edges))
        if by_bin:
            ticks = np.linspace(0, len(edges) - 1, 5).round().astype(int)
            ax.set_xticks(ticks, [f"{edges[t]:.2g}" for t in ticks])
        for k, (name, counts) in enumerate(series.items()):
            counts = np.asarray(counts, dtype=np.float64)
            total = counts.sum()
            y = 100 * counts / total if as_share and total else counts
            ax.bar(x, y, width, align="edge", alpha=0.55 if len(series) > 1 else 0.9,
                   color=COLOURS[(k + (1 if len(series) == 1 else 0)) % len(COLOURS)],
                   label=f"{short(name, 30)} ({int(total):,} records)")
        unit = next((u for k, u in UNITS.items() if metric.startswith(k)), "score")
        ax.set_xlabel(f"{short(metric)} ({unit})")
        ax.set_ylabel("share of the set (%)" if as_share else "records")
        _legend_outside(ax)
    return out[0]


def heatmap(names: list[str], matrix: np.ndarray) -> str:
    """A correlation matrix in [-1, 1] with each cell's value written in it (blank where undefined)."""
    n = len(names)
    with figure(1.6 + 0.7 * n, 1.2 + 0.6 * n) as (fig, ax, out):
        im = ax.imshow(np.nan_to_num(matrix, nan=0.0), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(n), [short(x, 20) for x in names], rotation=30, ha="right")
        ax.set_yticks(range(n), [short(x, 20) for x in names])
        for i in range(n):
            for j in range(n):
                if np.isfinite(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:+.2f}", ha="center", va="center", fontsize=8,
                            color="white" if abs(matrix[i, j]) > 0.6 else "black")
        ax.set_xlabel("metric")
        ax.set_ylabel("metric")
        fig.colorbar(im, ax=ax, label="Spearman correlation (-1 to 1)", fraction=0.046, pad=0.04)
    return out[0]


def scatter_map(xy: np.ndarray, labels: np.ndarray, what: str) -> str:
    """A 2-D map of points coloured by cluster, legend outside."""
    with figure(6.4, 4.2) as (fig, ax, out):
        for k, lab in enumerate(np.unique(labels)):
            pts = xy[labels == lab]
            ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.7, color=COLOURS[(k + 1) % len(COLOURS)],
                       label=f"cluster {lab} ({len(pts):,})", rasterized=True)
        ax.set_xlabel(f"{what}: principal component 1 (embedding units)")
        ax.set_ylabel("principal component 2 (embedding units)")
        _legend_outside(ax)
    return out[0]


def overlap_matrix(names: list[str], matrix: np.ndarray) -> str:
    """Pairwise Jaccard overlaps of selections, in [0, 1]."""
    n = len(names)
    with figure(1.8 + 0.8 * n, 1.2 + 0.6 * n) as (fig, ax, out):
        im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), [short(x, 24) for x in names], rotation=30, ha="right")
        ax.set_yticks(range(n), [short(x, 24) for x in names])
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > 0.6 else "black")
        ax.set_xlabel("selection")
        ax.set_ylabel("selection")
        fig.colorbar(im, ax=ax, label="Jaccard overlap (0 to 1)", fraction=0.046, pad=0.04)
    return out[0]
