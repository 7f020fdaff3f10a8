"""`mmselect select` as a library call: read -> validate -> score -> rank -> select -> write, with full accounting.

Guardrails against a silent wrong result (each a one-line `SelectionError`, exit 2 from the CLI):
  - one rejection reason covering more than half of the records (a wrong `--images`, the wrong file) stops the run
    unless `allow_rejects`;
  - a count budget larger than the valid records stops the run unless `allow_short`;
  - a metric with no score for any record stops the run;
  - a `--scores` table made from another input, or with another configuration of a requested metric, is refused.
Records missing a metric are handled by `missing` (see `MISSING_POLICIES`); the report counts them per metric.

Outputs form one unit: the selection and the rejected list are written first (each atomically), the report last;
the report names both files with their sha256, so a reader that finds the report and matching checksums has a
complete set. The previous report is removed before anything is written, so a killed run leaves no report.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from selector.core.arrow_numpy import to_arrow
from selector.core.errors import MmselectError
from selector.core.io import SCORES_INPUT_KEY, atomic_write, check_outputs, input_fingerprint, sha256_file
from selector.core.ranking import Ranking, Selection, resolve_budget, select
from selector.core.records import (OUT_FORMATS, RecordSet, check_annotatable, check_record_outputs, check_rejections,
                                   read_records, reason_kind, write_rejected, write_records)
from selector.core.scores import align_scores
from selector.core.sources import is_spec
from selector.core.strict_json import dumps

log = logging.getLogger(__name__)

MISSING_POLICIES = {
    "group": "records lacking a metric compete among themselves, in their own proportional quota (by the metrics "
             "they have); complete records are never displaced by them",
    "worst": "a missing metric counts as the worst score of that metric",
    "median": "a missing metric counts as the median score of that metric",
}


class SelectionError(MmselectError):
    """A run that would give a silently wrong result (mostly rejected, short of its budget, a metric never scored,
    scores from another input or configuration)."""


@dataclass(frozen=True)
class Accounting:
    """Where every input record went. `read == rejected + selected + not_selected` always holds."""

    read: int
    rejected: int
    selected: int
    not_selected: int

    def __post_init__(self):
        if self.read != self.rejected + self.selected + self.not_selected:
            raise AssertionError(f"accounting does not reconcile: {self}")

    def line(self) -> str:
        return (f"read {self.read}, rejected {self.rejected}, "
                f"selected {self.selected}, not selected {self.not_selected}")


@dataclass(frozen=True)
class SelectConfig:
    """Typed parameters of one selection run (the CLI fills this; library code never sees argv)."""

    input: Path | str  # a path, or an input spec (hf://datasets/..., a glob or brace pattern of shards)
    out: Path
    budget: int | float
    images: Path | None = None
    fmt: str | None = None
    metrics: tuple[str, ...] = ("length",)
    weights: tuple[float, ...] | None = None
    normalise: str = "robust-z"
    scores: Path | None = None
    seed: int = 0
    strict: bool = False
    workers: int = 0
    batch_size: int = 64
    progress: bool = True
    metric_params: dict = field(default_factory=dict)  # metric name -> keyword arguments for metrics.build
    score_cache: Path | None = None  # metrics' on-disk score cache (None: no reuse across runs)
    device: str = "auto"
    metric_summary: bool = False  # report each scalar metric's pool vs selection mean (selector.selection_summary)
    allow_rejects: bool = False  # go on when one rejection reason covers most records
    allow_short: bool = False  # write fewer records than a count budget asks for when too few are valid
    missing: str = "group"  # MISSING_POLICIES
    diversity: float | str | None = None  # DEITA cosine threshold, "auto", or None (off): selector.core.diversity
    diversity_features: tuple[str, ...] = ("embed-image",)  # embedding columns for diversity / semdedup / coincide
    semdedup: float | None = None  # SemDeDup cosine threshold (None: off): selector.core.semdedup
    clusters: int | None = None  # k-means clusters for semdedup / coincide (None: their defaults)
    coincide: bool = False  # ranked by the COINCIDE ranker (the CLI passes it as ranker_factory)
    annotate: bool = False  # add "mmselect": {"score", "rank", "group"} to each kept record (annotation_members)
    out_format: str = "same"  # records.OUT_FORMATS: the input's own format, or LLaVA JSON / JSONL
    columns: dict = field(default_factory=dict)  # table inputs: role (id, image, conversations, texts) -> column
    group_by: str | None = None  # a field / column whose values get proportional quotas, or "cluster[:K]"

    # The run's settings as `mmselect select` flags (dest -> value, plus `versions`), recorded in OUT.report.json
    # under "settings" so that `mmselect select --config OUT.report.json` replays the run. The CLI passes every
    # resolved flag; left empty, it is filled from the fields above (model flags cannot be recovered from
    # `metric_params`, so a library call's record replays only the metric-free settings).
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.missing not in MISSING_POLICIES:
            raise SelectionError(f"unknown missing-metric policy {self.missing!r}; choose one of "
                                 f"{', '.join(MISSING_POLICIES)}")
        if not self.metrics:
            raise SelectionError("no metric given")
        if len(set(self.metrics)) != len(self.metrics):
            raise SelectionError(f"a metric is named twice in {','.join(self.metrics)}")
        if self.weights is not None:
            if len(self.weights) != len(self.metrics):
                raise SelectionError(f"--weights has {len(self.weights)} value(s) for {len(self.metrics)} metric(s) "
                                     f"({', '.join(self.metrics)}): give one weight per metric")
            if not all(np.isfinite(w) for w in self.weights) or not any(self.weights):
                raise SelectionError("weights must be finite numbers, not all zero")
        if self.seed < 0 or self.seed >= 2 ** 63:
            raise SelectionError(f"seed must be a non-negative integer, got {self.seed}")
        if self.batch_size < 1:
            raise SelectionError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise SelectionError(f"workers must be 0 (one per CPU) or more, got {self.workers}")
        for name, value in (("diversity", self.diversity), ("semdedup", self.semdedup)):
            if value is not None and value != "auto" and not (isinstance(value, (int, float)) and -1 <= value <= 1):
                raise SelectionError(f"--{name} is a cosine similarity in [-1, 1]"
                                     + (" or 'auto'" if name == "diversity" else "") + f", got {value!r}")
        if (self.diversity is not None or self.semdedup is not None or self.coincide) and not self.diversity_features:
            raise SelectionError("--diversity-features names no embedding column")
        if self.out_format not in OUT_FORMATS:
            raise SelectionError(f"unknown output format {self.out_format!r}; choose one of {', '.join(OUT_FORMATS)}")
        if self.group_by is not None and self.group_by.startswith("cluster"):
            _cluster_count(self.group_by)
        if not self.settings:
            object.__setattr__(self, "settings", _flag_settings(self))


def _flag_settings(config: SelectConfig) -> dict:
    """`config` as `mmselect select` flags (what SelectConfig.settings holds when the CLI did not fill it)."""
    from selector.app.recipes import versions

    def path(p):
        return None if p is None else p if isinstance(p, str) and is_spec(p) else str(Path(p).resolve())

    return {"input": path(config.input), "out": path(config.out), "budget": config.budget,
            "images": path(config.images), "fmt": config.fmt, "metrics": list(config.metrics),
            "weights": None if config.weights is None else list(config.weights), "normalise": config.normalise,
            "scores": path(config.scores), "selector": None, "seed": config.seed, "strict": config.strict,
            "workers": config.workers or None, "batch_size": config.batch_size,
            "score_cache": path(config.score_cache), "device": config.device, "missing": config.missing,
            "allow_rejects": config.allow_rejects, "allow_short": config.allow_short, "annotate": config.annotate,
            "out_format": config.out_format, "columns": dict(config.columns) or None, "group_by": config.group_by,
            "diversity": config.diversity, "diversity_features": list(config.diversity_features),
            "semdedup": config.semdedup, "clusters": config.clusters, "coincide": config.coincide,
            "versions": versions()}


@dataclass
class SelectResult:
    out: Path
    rejected_path: Path
    report_path: Path
    accounting: Accounting
    selection: Selection
    ranking: Ranking
    records: RecordSet = field(repr=False)
    shifts: list = field(default_factory=list)  # selector.selection_summary.MetricShift per metric (metric_summary)
    scores: pa.Table | None = field(default=None, repr=False)  # the valid records' scores, before --missing fills
    composition: list = field(default_factory=list)  # with group_by: selector.core.composition rows
    chart_path: Path | None = None
    diversity: dict = field(default_factory=dict)  # the report's diversity / semdedup / composition / map sections

    def diversity_line(self) -> str:
        """One line on what --semdedup and --diversity did ("" when neither ran)."""
        from selector.app.diversity_step import summary_line

        return summary_line(self.diversity)


def load_scores(path: Path) -> pa.Table:
    """A score table: one Parquet file, or the folder of a sharded run (`score --engine ray`: its manifest)."""
    import pyarrow.parquet as pq

    from selector.core.scores import check_score_table, is_score_dir, read_score_dir

    path = Path(path)
    if is_score_dir(path):
        try:
            return check_score_table(read_score_dir(path), f"--scores {path}")
        except (pa.ArrowException, OSError) as exc:
            raise SelectionError(f"--scores {path}: a shard of this score folder is unreadable ({exc}); rerun "
                                 "`mmselect score` on it to rewrite it") from None
    if not path.is_file():
        raise SelectionError(f"--scores {path} does not exist" if not path.exists() else
                             f"--scores {path} is neither a score table nor a score folder (no manifest.json)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SelectionError(f"--scores {path} is not a Parquet score table from `mmselect score` ({exc})") from None
    return check_score_table(table, f"--scores {path}")


def _check_scores_input(stored: pa.Table, records: RecordSet, scores_path: Path) -> None:
    import json
    import logging

    raw = (stored.schema.metadata or {}).get(SCORES_INPUT_KEY)
    if raw is None:
        logging.getLogger(__name__).warning("%s records no input fingerprint (made by an older mmselect): cannot "
                                            "check that it scores this input", scores_path)
        return
    want = json.loads(raw)
    have = input_fingerprint(records.files)
    if want.get("sha256") != have["sha256"]:
        raise SelectionError(f"--scores {scores_path} was computed from another input (sha256 "
                             f"{str(want.get('sha256'))[:12]}..., this input {have['sha256'][:12]}...); "
                             "score this file with `mmselect score`")


def score_table(records: RecordSet, config: SelectConfig) -> pa.Table:
    """Scores for the valid records: columns of `config.scores` are reused as they are (nulls there are scores
    recorded as missing, with their `__reason`), and only records absent from that table are computed, with the
    same metric configuration (a column computed with another configuration is refused, never mixed)."""
    from metrics import available, build
    from metrics.runner import REASON_SUFFIX, RunnerConfig, score_metadata, score_records

    valid = records.valid_table()
    have = known = None
    stored_meta: dict = {}
    if config.scores:
        ids = valid.column("id").to_pylist()
        stored = load_scores(config.scores)
        _check_scores_input(stored, records, config.scores)
        stored_meta = score_metadata(stored)
        have = align_scores(stored, ids)
        table_ids = set(stored.column("id").to_pylist())
        known = np.array([rid in table_ids for rid in ids], dtype=bool)
    cols = {"id": valid.column("id")}
    runner = RunnerConfig(batch_size=config.batch_size, progress=config.progress, cache_dir=config.score_cache,
                          device=config.device)
    root = str(records.images_root) if records.images_root else None
    stored_cols = have.column_names if have is not None else []
    unknown = [m for m in config.metrics if m not in available() and m not in stored_cols]
    if unknown:
        raise SelectionError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(sorted(available()))}"
                             + (f", or a column of --scores ({', '.join(stored_cols[1:])})" if stored_cols else ""))
    for m in config.metrics:
        reuse = m in stored_cols
        whole = reuse and known.all()  # every row comes from the table: nothing can mix, its configuration stands
        try:
            metric = build(m, **config.metric_params.get(m, {}))
        except (TypeError, ValueError, KeyError, MmselectError) as exc:
            if not whole:
                raise SelectionError(f"metric {m}: {exc}") from None
            metric = None  # this run could not even build the metric: the table's column is used as stored
        stored_hash = (stored_meta.get(m) or {}).get("hash") if reuse else None
        differs = metric is not None and stored_hash is not None and stored_hash != metric.config_hash()
        if whole:
            if differs:
                log.info("--scores %s: column %s is used as stored (%s); this run's metric flags do not apply to it",
                         config.scores, m, _config_text(stored_meta[m].get("config")))
            cols[m] = have.column(m)
            if m + REASON_SUFFIX in stored_cols:
                cols[m + REASON_SUFFIX] = have.column(m + REASON_SUFFIX)
            continue
        if differs:  # the rest must be scored exactly as the table's rows were, or not at all
            raise SelectionError(
                f"--scores {config.scores}: column {m} was computed with another configuration "
                f"({_config_text(stored_meta[m].get('config'))}) than this run's "
                f"({_config_text(metric.config())}); pass the same metric flags, or score again")
        if reuse:  # score only the records the table does not cover, with the table's own configuration
            missing_rows = np.flatnonzero(~known)
            computed = score_records(valid.take(to_arrow(missing_rows)), [metric], runner, images_root=root)
            merged = have.column(m).to_pylist()
            for row, value in zip(missing_rows, computed.column(metric.column).to_pylist()):
                merged[row] = value
            cols[m] = pa.array(merged, have.column(m).type)
        else:
            computed = score_records(valid, [metric], runner, images_root=root)
            cols[m] = computed.column(metric.column)
            if metric.column + REASON_SUFFIX in computed.column_names:
                cols[m + REASON_SUFFIX] = computed.column(metric.column + REASON_SUFFIX)
    return pa.table(cols)


def _config_text(config) -> str:
    import json

    text = json.dumps(config, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def _metric_matrix(scores: pa.Table, metrics: tuple[str, ...]) -> np.ndarray | None:
    import pyarrow.compute as pc

    from selector.core.arrow_numpy import to_numpy

    cols = []
    for m in metrics:
        col = scores.column(m)
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            return None  # embeddings: a learned selector's input, not a scalar score
        cols.append(to_numpy(pc.cast(col, pa.float64()), null=np.nan))
    return np.stack(cols, axis=1) if cols else None


def apply_missing_policy(scores: pa.Table, metrics: tuple[str, ...], policy: str, n_valid: int
                         ) -> tuple[pa.Table, np.ndarray | None, dict[str, int]]:
    """(scores to rank, group labels or None, records lacking each metric). A metric missing for every record is
    an error. `worst` / `median` fill the gaps; `group` returns one group per pattern of missing metrics."""
    x = _metric_matrix(scores, metrics)
    if x is None:
        return scores, None, {}
    absent = np.isnan(x)
    lacking = {m: int(absent[:, j].sum()) for j, m in enumerate(metrics)}
    if n_valid:
        for j, m in enumerate(metrics):
            if absent[:, j].all():
                reasons = scores.column(m + "__reason").to_pylist() if m + "__reason" in scores.column_names else []
                top = Counter(r for r in reasons if r).most_common(1)
                why = f" (e.g. {top[0][0]})" if top else ""
                raise SelectionError(f"metric {m} has no score for any of the {n_valid} records{why}; ranking by it "
                                     "would be random")
    if not absent.any():
        return scores, None, lacking
    if policy == "group":
        # group = which metrics a record lacks (bit j: metric j), 0 = complete; a record lacking every metric has
        # nothing to compete on: -1, ranked after all others (as a NaN score always was)
        codes = absent.astype(np.int64) @ (1 << np.arange(len(metrics), dtype=np.int64))
        codes[absent.all(axis=1)] = -1
        return scores, (codes if len(set(codes[codes >= 0].tolist())) > 1 else None), lacking
    for j, m in enumerate(metrics):
        col = x[:, j]
        fill = np.nanmin(col) if policy == "worst" else np.nanmedian(col)
        filled = np.where(np.isnan(col), fill, col)
        scores = scores.set_column(scores.column_names.index(m), m, pa.array(filled, pa.float64()))
    return scores, None, lacking


def _select_in_groups(ranking: Ranking, groups: np.ndarray, k: int, seed: int, diversity=None) -> Selection:
    """`k` records, each missing-metric group (`groups` >= 0) in its proportional quota; records lacking every
    metric (-1) only fill what the others cannot."""
    has = groups >= 0
    pos = np.flatnonzero(has)
    sub = Ranking(ranking.ids[pos], ranking.scores[pos], groups[pos], ranking.source, dict(ranking.meta))
    first = select(sub, min(k, len(pos)), seed=seed, diversity=None if diversity is None else diversity.take(pos))
    chosen = pos[first.indices]
    if k > len(chosen):
        order = ranking.order(seed)
        chosen = np.concatenate([chosen, order[~has[order]][:k - len(chosen)]])
    chosen = chosen.astype(np.int64)
    return Selection(indices=chosen, ids=ranking.ids[chosen], scores=ranking.scores[chosen], source=ranking.source,
                     budget=k, quotas=first.quotas, info=first.info)


ANNOTATION_KEY = "mmselect"


def annotation_members(ranking: Ranking, selection: Selection, groups: np.ndarray | None, seed: int
                       ) -> dict[str, list]:
    """`{"mmselect": [{"score", "rank", "group"}, ...]}`, one per selected record (in the selection's order):
    the ranking's score (null for none), the rank in the ranking's order over every valid record (1 = best, ties
    broken by `seed` as the selection broke them) and the group whose quota it filled (the ranking's groups, else
    the missing-metric group; null without groups)."""
    order = ranking.order(seed)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    labels = ranking.groups if ranking.groups is not None else groups

    def plain(v):
        v = v.item() if hasattr(v, "item") else v
        return None if isinstance(v, float) and not np.isfinite(v) else v

    return {ANNOTATION_KEY: [{"score": plain(ranking.scores[i]), "rank": int(rank[i]),
                              "group": None if labels is None else plain(labels[i])}
                             for i in selection.indices.tolist()]}


def run_select(config: SelectConfig, ranker_factory: Callable[[SelectConfig], object] | None = None) -> SelectResult:
    """Select `config.budget` records and write `out`, `out.rejected.jsonl` and `out.report.json` (last)."""
    from selector.app.diversity_step import feature_columns, prepare
    from selector.core.rankers import MetricRanker

    out_path = Path(config.out)
    rejected_target = Path(f"{config.out}.rejected.jsonl")
    report_path = Path(f"{config.out}.report.json")
    check_outputs([config.input, config.scores], [out_path, rejected_target, report_path])
    if config.images is not None and not Path(config.images).is_dir():
        raise SelectionError(f"--images {config.images} is not a folder" if Path(config.images).exists()
                             else f"--images {config.images} does not exist")
    chart_path = Path(f"{config.out}.composition.png") if config.group_by else None
    check_outputs([], [chart_path] if chart_path else [])
    group_field = None if config.group_by is None or config.group_by.startswith("cluster") else config.group_by
    records = read_records(config.input, images=config.images, fmt=config.fmt, strict=config.strict,
                           workers=config.workers, columns=config.columns, group_by=group_field)
    # every file of the input (a cc_sbu folder's filter_cap.json, each shard) is never an output
    check_record_outputs(records, [out_path, rejected_target, report_path, chart_path])
    check_rejections(records, config.allow_rejects)
    if config.annotate:
        check_annotatable(records, config.out_format)
    valid_rows = records.valid_rows()
    k = resolve_budget(config.budget, len(valid_rows))
    if not isinstance(config.budget, float) and int(config.budget) > len(valid_rows) and not config.allow_short:
        raise SelectionError(f"budget {config.budget} but only {len(valid_rows)} of {len(records)} records are valid "
                             f"({len(records) - len(valid_rows)} rejected); pass --allow-short to keep all "
                             f"{len(valid_rows)}")
    extra = tuple(c for c in feature_columns(config) if c not in config.metrics)  # embeddings the steps need
    scores = raw_scores = score_table(records, replace(config, metrics=tuple(config.metrics) + extra) if extra
                                      else config)
    groups, lacking = None, {}
    if ranker_factory is None:
        scores, groups, lacking = apply_missing_policy(scores, tuple(config.metrics), config.missing, len(valid_rows))
        ranker = MetricRanker(tuple(config.metrics), config.weights, config.normalise)
    else:
        ranker = ranker_factory(config)
    try:
        ranking = ranker.rank(scores)
    except (KeyError, ValueError) as exc:
        raise SelectionError(str(exc).strip("'\"")) from None
    step = prepare(ranking, groups, k, config, scores)
    sub = ranking if step is None else step.ranking
    sub_groups, sub_k, diversity = (groups, k, None) if step is None else (step.groups, step.k, step.diversity)
    labels = None
    if config.group_by:
        labels = _group_labels(records, valid_rows, scores, config)
        sub_labels = labels if step is None else labels[step.keep_rows]
        selection = select(sub.with_groups(sub_labels), sub_k, seed=config.seed, diversity=diversity)
    elif sub_groups is not None and sub.groups is None:
        selection = _select_in_groups(sub, sub_groups, sub_k, config.seed, diversity)
    else:
        selection = select(sub, sub_k, seed=config.seed, diversity=diversity)
    if step is not None:
        selection = step.expand(selection, ranking)
    report_path.unlink(missing_ok=True)  # a run killed from here on leaves no report naming a mixed set
    members = annotation_members(ranking, selection, groups, config.seed) if config.annotate else None
    out = write_records(records, valid_rows[selection.indices], config.out, config.out_format, members)
    rejected_path = write_rejected(records, config.out)
    n_rejected = len(records) - len(valid_rows)
    accounting = Accounting(read=len(records), rejected=n_rejected, selected=len(selection),
                            not_selected=len(valid_rows) - len(selection))
    report = {
        "input": str(config.input), "format": asdict(records.layout), "out": str(out),
        "rejected_file": str(rejected_path), "ranker": ranking.source, "budget": config.budget,
        "seed": config.seed, "accounting": asdict(accounting),
        "selected_ids": [str(i) for i in selection.ids], "settings": config.settings,
        "rejected_by_reason": dict(Counter(reason_kind(r["reason"]) for r in records.rejected()).most_common()),
    }
    if lacking:
        report["missing_metric"] = {"policy": config.missing, "records_lacking": lacking}
    comp = []
    if labels is not None:
        from selector.core.composition import bar_chart, composition

        comp = composition(labels, selection.indices, selection.quotas)
        bar_chart(comp, chart_path, config.group_by)
        report["composition"] = {"group_by": config.group_by, "groups": comp, "chart": str(chart_path)}
    if records.meta.get("webdataset"):
        report["webdataset"] = {k: v for k, v in records.meta["webdataset"].items()}
    shifts = []
    if config.metric_summary:
        from selector.core.selection_summary import metric_shifts, to_dicts

        shifts = metric_shifts(scores, ranking.scores, selection.indices)
        report["metric_shifts"] = to_dicts(shifts)
    if ranking.meta.get("model"):
        report["selector_model"] = ranking.meta["model"]
    diversity_report = {} if step is None else step.finish(selection, ranking, records.valid_table(), out, config)
    report.update(diversity_report)
    report["files"] = {"selection": {"path": str(out), "sha256": sha256_file(out)},
                       "rejected": {"path": str(rejected_path), "sha256": sha256_file(rejected_path)},
                       "note": "the report is written last: a set is complete when both checksums match"}
    if chart_path is not None:
        report["files"]["composition_chart"] = {"path": str(chart_path), "sha256": sha256_file(chart_path)}
    atomic_write(report_path, [dumps(report)])
    return SelectResult(out, rejected_path, report_path, accounting, selection, ranking, records, shifts, raw_scores,
                        comp, chart_path, diversity_report)


def _cluster_count(group_by: str) -> int:
    """`cluster` -> the learned selector's default cluster count; `cluster:K` -> K (>= 2)."""
    from selector.learned.final import ClusterConfig

    _, _, k = group_by.partition(":")
    if group_by.split(":")[0] != "cluster" or (k and (not k.isdigit() or int(k) < 2)):
        raise SelectionError(f"--group-by {group_by}: a metric-derived grouping is 'cluster' or 'cluster:K' (K >= 2)")
    return int(k) if k else ClusterConfig().k


def _group_labels(records: RecordSet, valid_rows: np.ndarray, scores: pa.Table, config: SelectConfig) -> np.ndarray:
    """Each valid record's group: its `--group-by` value (records without one: "(none)"), or with `cluster[:K]`
    the learned selector's spectral clusters of the records' normalised metric scores (missing ones imputed with
    the metric's median)."""
    from selector.core.composition import NO_GROUP

    if not config.group_by.startswith("cluster"):
        values = records.groups.take(to_arrow(valid_rows)).to_pylist()
        return np.array([NO_GROUP if v is None else v for v in values], dtype=object)
    from selector.core.normalize import fit_normaliser
    from selector.learned.final import ClusterConfig, spectral_groups

    x = _metric_matrix(scores, tuple(config.metrics))
    if x is None:
        raise SelectionError(f"--group-by {config.group_by}: clusters are drawn from scalar metric scores; "
                             "an embedding metric cannot be clustered here")
    z = fit_normaliser(x, config.normalise).transform(x)
    if len(z) and np.isnan(z).any():  # a missing metric: the median record's score (a metric missing for every
        z = np.where(np.isnan(z), np.nanmedian(z, axis=0), z)  # record was refused by apply_missing_policy)
    labels = spectral_groups(z, ClusterConfig(k=_cluster_count(config.group_by), seed=config.seed))
    return np.array([f"cluster {g}" for g in labels], dtype=object)
