"""Composition by source: how many records each group (a `--group-by` value, or a cluster) holds in the pool and in
the selection, as rows for the report, a text table for the terminal, and a bar chart."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from selector.core.io import atomic_path

NO_GROUP = "(none)"


def composition(labels: np.ndarray, chosen: np.ndarray, quotas: dict | None = None) -> list[dict]:
    """One row per group, largest pool first: pool count and share, selected count and share, and the quota."""
    labels = np.asarray(labels)
    names, pool = np.unique(labels, return_counts=True)
    picked = dict(zip(*np.unique(labels[np.asarray(chosen, np.int64)], return_counts=True))) if len(chosen) else {}
    total, kept = max(int(pool.sum()), 1), max(len(chosen), 1)
    rows = []
    for name, n in zip(names.tolist(), pool.tolist()):
        s = int(picked.get(name, 0))
        rows.append({"group": str(name), "pool": int(n), "pool_share": round(n / total, 4), "selected": s,
                     "selected_share": round(s / kept, 4),
                     "quota": None if quotas is None else int(quotas.get(name, 0))})
    rows.sort(key=lambda r: (-r["pool"], r["group"]))
    return rows


def table_text(rows: list[dict], title: str) -> str:
    """The composition as an aligned text table."""
    width = max([len(title)] + [len(r["group"]) for r in rows])
    lines = [f"{title:<{width}}  {'pool':>8} {'share':>7}  {'selected':>8} {'share':>7}"]
    for r in rows:
        lines.append(f"{r['group']:<{width}}  {r['pool']:>8} {r['pool_share']:>7.1%}  {r['selected']:>8} "
                     f"{r['selected_share']:>7.1%}")
    return "\n".join(lines)


def bar_chart(rows: list[dict], out: Path, title: str) -> Path:
    """Pool share beside selected share per group, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = rows[:30]  # beyond 30 groups the labels stop being readable; the report's table has them all
    x = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(shown) + 2), 3.6))
    ax.bar(x - 0.2, [r["pool_share"] for r in shown], 0.4, label="pool")
    ax.bar(x + 0.2, [r["selected_share"] for r in shown], 0.4, label="selected")
    ax.set_xticks(x, [r["group"][:24] for r in shown], rotation=45 if len(shown) > 4 else 0, ha="right"
                  if len(shown) > 4 else "center")
    ax.set_ylabel("share of records")
    ax.set_title(f"composition by {title}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return Path(out)
