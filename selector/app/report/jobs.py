"""The three report pages end to end: `mmselect analyze` (one input), `select --report` (a selection beside its pool)
and `mmselect compare` (several selections of one pool). Each reads the records with `read_records` (every input
format it knows), lines up scores with `score_table` (the same rules as `select --scores`), and writes
`REPORT_DIR/index.html` atomically.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.app.report import sections
from selector.app.report.html import Section, figure, heading, page, paragraph, table
from selector.app.report.pool import REASON_SUFFIX, Pool
from selector.core.errors import MmselectError
from selector.core.io import atomic_write, check_outputs
from selector.core.records import RecordSet, check_record_outputs, read_records

log = logging.getLogger(__name__)
PAGE = "index.html"
CUT_CARDS = 12  # cards on each side of a selection's cut, and per difference between two selections


class ReportError(MmselectError):
    """A report cannot be made from these inputs (selections of different pools, ids not in the pool, ...)."""


@dataclass(frozen=True)
class Scoring:
    """Which scores a page shows; the fields `selector.app.pipeline.score_table` reads. `metrics=None`: every
    column of `scores`, or `length` without a score table."""

    metrics: tuple[str, ...] | None = None
    scores: Path | None = None
    metric_params: dict = field(default_factory=dict)
    score_cache: Path | None = None
    device: str = "auto"
    batch_size: int = 64
    progress: bool = False


@dataclass(frozen=True)
class AnalyzeConfig:
    input: Path
    out: Path  # the report folder; the page is out/index.html
    images: Path | None = None
    fmt: str | None = None
    workers: int = 0  # 0 = one per CPU (read_records)
    seed: int = 0  # the sample for the embedding map and the cluster fit
    scoring: Scoring = Scoring()


@dataclass(frozen=True)
class CompareConfig:
    selections: tuple[Path, ...]  # selection files from `mmselect select` (their OUT.report.json is read)
    out: Path
    pool: Path | None = None  # default: the input named by the first selection's report
    images: Path | None = None
    fmt: str | None = None
    workers: int = 0
    seed: int = 0
    scoring: Scoring = Scoring()

    def __post_init__(self):
        if len(self.selections) < 2:
            raise ReportError("compare needs at least two selections")


@dataclass
class PageResult:
    path: Path
    data: dict
    pool: Pool = field(repr=False)


def _metrics(scoring: Scoring) -> Scoring:
    if scoring.metrics:
        return scoring
    if scoring.scores is None:
        return replace(scoring, metrics=("length",))
    from selector.app.pipeline import load_scores

    names = [n for n in load_scores(scoring.scores).column_names if n != "id" and not n.endswith(REASON_SUFFIX)]
    if not names:
        raise ReportError(f"--scores {scoring.scores} has no metric column")
    return replace(scoring, metrics=tuple(names))


def load_pool(records: RecordSet, scoring: Scoring, seed: int) -> Pool:
    from selector.app.pipeline import score_table

    return Pool(records, score_table(records, _metrics(scoring)), seed)


def _write(out_dir: Path, title: str, subtitle: str, parts: list, inputs: list, extra: dict | None = None
           ) -> tuple[Path, dict]:
    out = Path(out_dir) / PAGE
    check_outputs(inputs, [out])
    secs: list[Section] = []
    data: dict = {"title": title, **(extra or {})}
    for part in parts:
        if part is None:
            continue
        s, d = part
        secs.append(s)
        data.update(d)
    atomic_write(out, [page(title, subtitle, secs, data).encode("utf-8", "replace")])
    return out, data


def pool_sections(records: RecordSet, pool: Pool, sets: dict | None = None) -> list:
    return [sections.overview(records, sets), sections.composition(pool, sets), sections.metrics(pool, sets),
            sections.correlation(pool), sections.extremes(pool), sections.embedding_map(pool)]


def run_analyze(config: AnalyzeConfig) -> PageResult:
    """Read and validate `config.input`, score it, and write the analysis page."""
    check_outputs([config.input, config.scoring.scores], [Path(config.out) / PAGE])
    records = read_records(config.input, images=config.images, fmt=config.fmt, workers=config.workers)
    check_record_outputs(records, [Path(config.out) / PAGE])
    pool = load_pool(records, config.scoring, config.seed)
    path, data = _write(config.out, f"mmselect analyze: {Path(config.input).name}",
                        f"{records.path} ({records.layout.schema}, {records.layout.container}); images root "
                        f"{records.images_root}", pool_sections(records, pool), [records.path])
    return PageResult(path, data, pool)


# ------------------------------------------------------------------------------------------------ a selection
def _rank_positions(order: np.ndarray) -> np.ndarray:
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def cut_section(pool: Pool, order: np.ndarray, chosen: np.ndarray, k: int = CUT_CARDS) -> tuple[Section, dict]:
    """Cards on both sides of a selection's cut: the best selected, the last ones in, and the just-missed (the
    best-ranked records left out), with each record's rank."""
    rank = _rank_positions(order)
    picked = np.zeros(len(order), bool)
    picked[chosen] = True
    in_order = order[picked[order]]
    out_order = order[~picked[order]]
    groups = {"best selected": in_order[:k], "last selected": in_order[-k:][::-1] if len(in_order) > k else in_order[:0],
              "just missed": out_order[:k]}
    s = Section("cut", "Around the cut")
    s.add(paragraph(f"{len(in_order):,} of {len(order):,} valid records selected. Ranks count from 1 (best) over "
                    "the ranking the selection was cut from; with group quotas a record can be left out above the "
                    "cut."))
    ids = pool.ids
    data = {}
    for title, rows in groups.items():
        s.add(heading(f"{title} ({len(rows)})"))
        s.add(sections.cards_for(pool, rows, note=lambda p: f"rank {rank[p]:,}"))
        data[title.replace(" ", "_")] = [ids[int(r)].as_py() for r in rows]
    return s, {"cut": data}


def write_selection_report(result, out_dir: Path, seed: int = 0) -> PageResult:
    """`select --report`: the selection beside its pool (a `SelectResult` with its score table)."""
    scores = result.scores
    ranked = np.asarray(result.ranking.scores, np.float64)
    same = Pool(result.records, scores, seed)
    if not any(np.array_equal(ranked, v, equal_nan=True) for v in same.values.values()):  # e.g. several metrics
        scores = scores.append_column(f"ranking score ({result.ranking.source or 'ranker'})", pa.array(ranked))
    pool = Pool(result.records, scores, seed)
    chosen = np.asarray(result.selection.indices, np.int64)
    sets = {"selection": chosen}
    order = result.ranking.order(seed)
    parts = pool_sections(result.records, pool, sets)
    parts.insert(1, cut_section(pool, order, chosen))
    path, data = _write(out_dir, f"mmselect select: {Path(result.out).name}",
                        f"{len(chosen):,} records selected from {result.records.path} by {result.ranking.source}",
                        parts, [result.records.path],
                        {"selection": {"size": int(len(chosen)), "ids": [str(i) for i in result.selection.ids]}})
    return PageResult(path, data, pool)


# ------------------------------------------------------------------------------------------------ compare
@dataclass(frozen=True)
class SelectionFile:
    name: str
    path: Path
    ids: list[str]  # record ids (keys as the pool's reader makes them), best first when the report has them
    pool: Path | None  # the input its report names
    images: Path | None


def read_selection(path: Path) -> SelectionFile:
    """A selection: ids from its `OUT.report.json` (the pool's own id keys, best first), else from the file's own
    records (which must carry ids: automatic `line-N` ids would name lines of the subset, not of the pool)."""
    path = Path(path)
    report = path if path.name.endswith(".report.json") else Path(f"{path}.report.json")
    name = path.name.removesuffix(".report.json")
    if report.is_file():
        try:
            doc = json.loads(report.read_bytes())
            ids = [str(i) for i in doc["selected_ids"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{report}: not a selection report from `mmselect select` ({exc})") from None
        settings = doc.get("settings") or {}
        pool = settings.get("input") or doc.get("input")
        images = settings.get("images")
        return SelectionFile(name, path, ids, Path(pool) if pool else None, Path(images) if images else None)
    if not path.is_file():
        raise ReportError(f"{path}: no such selection file (or report)")
    records = read_records(path, check_image_files=False, dedup=False, workers=1)
    kinds = records.table.column("id_kind").to_pylist()
    if 2 in kinds:
        raise ReportError(f"{path} has records without an id and no report beside it ({report.name}); pass the "
                          "selection's report, or add ids")
    return SelectionFile(name, path, records.valid_table().column("id").to_pylist(), None, None)


def _unique_names(files: list[SelectionFile]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for f in files:
        n = seen.get(f.name, 0)
        seen[f.name] = n + 1
        out.append(f.name if not n else f"{f.name} ({n + 1})")
    return out


def overlap_section(names: list[str], sets: dict[str, np.ndarray]) -> tuple[Section, dict]:
    from selector.app.report import plots, stats

    n = len(names)
    matrix = np.eye(n)
    rows, data = [], {}
    for i in range(n):
        for j in range(i + 1, n):
            a, b = set(sets[names[i]].tolist()), set(sets[names[j]].tolist())
            jac = stats.jaccard(a, b)
            matrix[i, j] = matrix[j, i] = jac
            rows.append([names[i], names[j], len(a), len(b), len(a & b), len(a - b), len(b - a), jac])
            data[f"{names[i]}|{names[j]}"] = {"jaccard": jac, "both": len(a & b), "only_first": len(a - b),
                                              "only_second": len(b - a)}
    s = Section("overlap", "Overlap")
    s.add(table(["selection A", "selection B", "A", "B", "in both", "only A", "only B", "Jaccard"], rows,
                key="overlap-table"))
    s.add(figure(plots.overlap_matrix(names, matrix), "Jaccard overlap of every pair of selections: records in "
                 "both divided by records in either (1 = the same records).", "overlap matrix"))
    return s, {"overlap": data}


def difference_section(pool: Pool, names: list[str], sets: dict[str, np.ndarray], k: int = CUT_CARDS
                       ) -> tuple[Section, dict]:
    """For each pair, cards of up to k records picked by one and not the other (in the picking selection's order)."""
    s = Section("differences", "Picked by one, not the other")
    ids = pool.ids
    data = {}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]][:6]
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            other = set(sets[y].tolist())
            only = [p for p in sets[x].tolist() if p not in other]
            s.add(heading(f"in {x}, not in {y}: {len(only):,} records (first {min(k, len(only))} shown)"))
            s.add(sections.cards_for(pool, only[:k]))
            data[f"{x}|{y}"] = [ids[int(p)].as_py() for p in only[:k]]
    return s, {"only": data}


def run_compare(config: CompareConfig) -> PageResult:
    files = [read_selection(p) for p in config.selections]
    pools = {os.path.realpath(f.pool) for f in files if f.pool is not None}
    pool_path = config.pool
    if pool_path is None:
        if not pools:
            raise ReportError("no selection names its pool (no OUT.report.json beside it): pass --pool INPUT")
        if len(pools) > 1:
            raise ReportError(f"the selections come from different pools ({', '.join(sorted(pools))}); compare "
                              "selections of one pool, or pass --pool")
        pool_path = Path(next(iter(pools)))
    images = config.images or next((f.images for f in files if f.images is not None), None)
    check_outputs([pool_path, config.scoring.scores, *config.selections], [Path(config.out) / PAGE])
    records = read_records(pool_path, images=images, fmt=config.fmt, workers=config.workers)
    pool = load_pool(records, config.scoring, config.seed)
    position = {rid: i for i, rid in enumerate(pool.ids.to_pylist())}
    names = _unique_names(files)
    sets = {}
    for name, f in zip(names, files):
        missing = [i for i in f.ids if i not in position]
        if missing:
            raise ReportError(f"{len(missing)} of {len(f.ids)} records of {f.path} are not valid records of "
                              f"{pool_path} (e.g. id {missing[0][:80]!r}); compare selections of one pool")
        sets[name] = np.array([position[i] for i in f.ids], dtype=np.int64)
    parts = [sections.overview(records, sets), overlap_section(names, sets), difference_section(pool, names, sets),
             sections.composition(pool, sets), sections.metrics(pool, sets), sections.correlation(pool),
             sections.extremes(pool), sections.embedding_map(pool)]
    path, data = _write(config.out, f"mmselect compare: {', '.join(names)}",
                        f"{len(names)} selections of {records.path}", parts, [records.path],
                        {"selections": {n: {"path": str(f.path), "size": len(f.ids)} for n, f in zip(names, files)}})
    return PageResult(path, data, pool)
