"""The sections of a report page, each a function of a `Pool` (and, for selection pages, named sets of valid-row
positions) that returns the section's markup and the numbers it shows (for the page's JSON block).

`sets` maps a name to the valid-row positions of that set; the pool itself is always the first series.
"""
from __future__ import annotations

import numpy as np

from selector.app.report import plots, stats
from selector.app.report.cards import cards_html, make_card
from selector.app.report.html import Section, figure, heading, paragraph, table
from selector.app.report.pool import Pool
from selector.core.records import RecordSet, reason_kind

POOL = "pool"


def _series(pool: Pool, sets: dict[str, np.ndarray] | None) -> dict[str, np.ndarray | None]:
    return {POOL: None, **(sets or {})}


def overview(records: RecordSet, sets: dict[str, np.ndarray] | None = None) -> tuple[Section, dict]:
    """How many records were read, valid and rejected, and why they were rejected (a table and a bar chart)."""
    valid = int(records.valid_mask().sum())
    reasons = stats.counts([reason_kind(r) for r in records.table.column("reason").drop_null().to_pylist()])
    counts = {"read": len(records), "valid": valid, "rejected": len(records) - valid}
    rows = [["read", counts["read"]], ["valid", valid], ["rejected", counts["rejected"]]]
    for name, pos in (sets or {}).items():
        counts[f"selected:{name}"] = len(pos)
        rows.append([f"selected by {name}", len(pos)])
    s = Section("overview", "Counts and rejections")
    s.add(table(["records", "count"], rows, key="counts"))
    if reasons:
        s.add(table(["rejection reason", "records"], [[k, v] for k, v in reasons.items()], key="rejections"))
        s.add(figure(plots.bars(reasons, "rejected records"), "Records rejected before scoring, by reason; a "
                     "rejected record is never selected.", "rejections by reason"))
    else:
        s.add(paragraph("No record was rejected."))
    return s, {"counts": counts, "rejected_by_reason": reasons}


def composition(pool: Pool, sets: dict[str, np.ndarray] | None = None) -> tuple[Section, dict]:
    """The pool (and each set) split by every facet: a table of counts and a chart of shares."""
    series = _series(pool, sets)
    s = Section("composition", "Composition")
    data = {}
    for facet, labels in pool.facets.items():
        per_set = {name: labels if pos is None else labels[pos] for name, pos in series.items()}
        pool_counts = stats.counts(labels)
        categories = list(pool_counts)[:20]
        if len(pool_counts) > 20:
            categories.append("(other)")
        table_counts = {}
        for name, lab in per_set.items():
            c = stats.counts(lab)
            table_counts[name] = [c.get(k, 0) for k in categories[:20]] + (
                [sum(v for k, v in c.items() if k not in categories)] if len(pool_counts) > 20 else [])
        data[facet] = {name: dict(zip(categories, v)) for name, v in table_counts.items()}
        s.add(heading(f"By {facet}"))
        header = [facet] + [f"{name} (records)" for name in series]
        s.add(table(header, [[c] + [table_counts[n][i] for n in series] for i, c in enumerate(categories)]))
        if len(pool_counts) < 2 and not sets:
            continue  # one group: the table says it all
        shares = {n: np.asarray(v, float) / max(sum(v), 1) for n, v in table_counts.items()}
        what = "the pool and each selection" if sets else "the pool"
        s.add(figure(plots.grouped_shares(categories, shares, facet),
                     f"Share of {what} in each group of {facet} (percent of its own set).",
                     f"composition by {facet}"))
    return s, {"composition": data}


def metrics(pool: Pool, sets: dict[str, np.ndarray] | None = None) -> tuple[Section, dict]:
    """Per metric: a summary table, the missing counts with their reasons, and a histogram (one series per set)."""
    series = _series(pool, sets)
    s = Section("metrics", "Metrics")
    if not pool.metrics:
        s.add(paragraph("No scalar metric: pass --metrics or --scores."))
        return s, {"metrics": {}}
    summaries = {m: stats.summarise(m, pool.values[m], pool.reasons(m)) for m in pool.metrics}
    rows = []
    for name, pos in series.items():
        for m in pool.metrics:
            v = pool.values[m] if pos is None else pool.values[m][pos]
            x = summaries[m] if pos is None else stats.summarise(m, v)
            rows.append([m, name, x.n, x.missing, x.mean, x.std, x.min, x.median, x.max])
    s.add(table(["metric", "set", "records", "missing", "mean", "std", "min", "median", "max"], rows,
                key="metric-summary"))
    data = {}
    s.add('<div class="row">')
    for m in pool.metrics:
        v = pool.values[m]
        per = {n: v if pos is None else v[pos] for n, pos in series.items()}
        edges = stats.bin_edges(*per.values())
        hist = {n: stats.histogram(x, edges) for n, x in per.items()}
        summary = summaries[m]
        s.add('<div class="cell">')
        s.add(heading(m))
        caption = (f"Distribution of {m} over {'the pool and each selection (percent of each set)' if sets else 'every scored record'}"
                   f"; {summary.missing:,} of {summary.n:,} records have no score.")
        s.add(figure(plots.histograms(m, edges, hist, as_share=bool(sets)), caption, f"histogram of {m}"))
        if summary.reasons:
            s.add(table(["why no score", "records"], [[k, v] for k, v in summary.reasons.items()]))
        s.add("</div>")
        data[m] = {"summary": summary.as_dict(), "edges": edges.tolist(),
                   "histograms": {n: h.tolist() for n, h in hist.items()}}
    s.add("</div>")
    return s, {"metrics": data}


def correlation(pool: Pool) -> tuple[Section, dict] | None:
    if len(pool.metrics) < 2:
        return None
    matrix = stats.spearman_matrix(pool.values)
    s = Section("correlation", "Correlation between metrics")
    s.add(figure(plots.heatmap(pool.metrics, matrix), "Spearman rank correlation of every pair of metrics over the "
                 "records that have both; +1 means they order the records alike.", "metric correlation heatmap"))
    clean = [[None if not np.isfinite(x) else float(x) for x in row] for row in matrix]
    return s, {"correlation": {"metrics": pool.metrics, "spearman": clean}}


def cards_for(pool: Pool, positions, note=lambda p: "") -> str:
    root = pool.images_root
    return cards_html([make_card(row, pool.scores_at(p), root, note(p))
                       for p, row in zip(list(positions), pool.rows(np.asarray(positions, dtype=np.int64)))])


def extremes(pool: Pool) -> tuple[Section, dict]:
    """For each metric, the records it scores lowest and highest, as cards."""
    s = Section("extremes", "Lowest- and highest-scored records")
    s.add(paragraph(f"For each metric, the {stats.EXTREMES} lowest- and {stats.EXTREMES} highest-scored records "
                    "(every record is considered; ties in file order)."))
    ids = pool.ids
    data = {}
    for m in pool.metrics:
        low, high = stats.extremes(pool.values[m])
        s.add(heading(f"{m}: lowest"))
        s.add(cards_for(pool, low))
        s.add(heading(f"{m}: highest"))
        s.add(cards_for(pool, high))
        data[m] = {"lowest": [ids[int(i)].as_py() for i in low], "highest": [ids[int(i)].as_py() for i in high]}
    return s, {"extremes": data}


def embedding_map(pool: Pool) -> tuple[Section, dict] | None:
    """A 2-D map (PCA of a sample) of each embedding, coloured by the pool's clusters."""
    if not pool.embedding_columns or pool.clusters is None:
        return None
    s = Section("map", "Embedding map")
    sample = pool.sample
    data = {}
    for name in pool.embedding_columns[:2]:
        x = pool.embedding(name)[sample]
        ok = ~np.isnan(x).any(axis=1)
        if ok.sum() < 3:
            continue
        xy = stats.project_2d(x[ok])
        labels = pool.clusters[sample][ok]
        s.add(figure(plots.scatter_map(xy, labels, name),
                     f"{name} of {ok.sum():,} records (a random sample of at most {len(sample):,}) projected on its "
                     f"two principal components, coloured by k-means cluster of {pool.embedding_columns[0]}.",
                     f"embedding map of {name}"))
        data[name] = {"points": int(ok.sum())}
    return s, {"map": data}
