"""`mmselect select` as a library call: read -> validate -> score -> rank -> select -> write, with full accounting."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from selector.core.arrow_numpy import to_arrow
from selector.core.errors import SettingsError
from selector.core.ranking import Ranking, Selection, select
from selector.core.strict_json import dumps
from selector.core.io import atomic_write
from selector.core.records import RecordSet, read_records, write_rejected, write_records
from selector.core.scores import align_scores


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

    input: Path
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
    # The run's settings as `mmselect select` flags (dest -> value, plus `versions`), recorded in OUT.report.json
    # under "settings" so that `mmselect select --config OUT.report.json` replays the run. The CLI passes every
    # resolved flag; left empty, it is filled from the fields above (model flags cannot be recovered from
    # `metric_params`, so a library call's record replays only the metric-free settings).
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.weights is not None and len(self.weights) != len(self.metrics):
            raise SettingsError(f"--weights has {len(self.weights)} value(s) for {len(self.metrics)} metric(s) "
                                f"({', '.join(self.metrics)}): give one weight per metric")
        if self.batch_size < 1:
            raise SettingsError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise SettingsError(f"--workers must be >= 0, got {self.workers}")
        if not 0 <= self.seed < 2**32:
            raise SettingsError(f"--seed must be in [0, 2**32), got {self.seed}")
        if not self.settings:
            object.__setattr__(self, "settings", _flag_settings(self))


def _flag_settings(config: SelectConfig) -> dict:
    """`config` as `mmselect select` flags (what SelectConfig.settings holds when the CLI did not fill it)."""
    from selector.app.recipes import versions

    def path(p):
        return None if p is None else str(Path(p).resolve())

    return {"input": path(config.input), "out": path(config.out), "budget": config.budget,
            "images": path(config.images), "fmt": config.fmt, "metrics": list(config.metrics),
            "weights": None if config.weights is None else list(config.weights), "normalise": config.normalise,
            "scores": path(config.scores), "selector": None, "seed": config.seed, "strict": config.strict,
            "workers": config.workers or None, "batch_size": config.batch_size,
            "score_cache": path(config.score_cache), "device": config.device, "versions": versions()}


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


def load_scores(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path)


def score_table(records: RecordSet, config: SelectConfig) -> pa.Table:
    """Scores for the valid records: columns of `config.scores` are reused as they are (nulls there are scores
    recorded as missing, with their `__reason`), and only records absent from that table are computed."""
    from metrics import build
    from metrics.runner import REASON_SUFFIX, RunnerConfig, score_records

    valid = records.valid_table()
    have = known = None
    if config.scores:
        ids = valid.column("id").to_pylist()
        stored = load_scores(config.scores)
        have = align_scores(stored, ids)
        table_ids = set(stored.column("id").to_pylist())
        known = np.array([rid in table_ids for rid in ids], dtype=bool)
    cols = {"id": valid.column("id")}
    runner = RunnerConfig(batch_size=config.batch_size, progress=config.progress, cache_dir=config.score_cache,
                          device=config.device)
    root = str(records.images_root) if records.images_root else None
    for m in config.metrics:
        reuse = have is not None and m in have.column_names
        if reuse and known.all():
            cols[m] = have.column(m)
            if m + REASON_SUFFIX in have.column_names:
                cols[m + REASON_SUFFIX] = have.column(m + REASON_SUFFIX)
            continue
        metric = build(m, **config.metric_params.get(m, {}))
        if reuse:  # score only the records the table does not cover
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


def run_select(config: SelectConfig, ranker_factory: Callable[[SelectConfig], object] | None = None) -> SelectResult:
    """Select `config.budget` records and write `out`, `out.rejected.jsonl` and `out.report.json`."""
    from selector.core.rankers import MetricRanker

    records = read_records(config.input, images=config.images, fmt=config.fmt, strict=config.strict,
                           workers=config.workers)
    valid_rows = records.valid_rows()
    scores = score_table(records, config)
    ranker = ranker_factory(config) if ranker_factory else MetricRanker(tuple(config.metrics), config.weights,
                                                                       config.normalise)
    ranking = ranker.rank(scores)
    selection = select(ranking, config.budget, seed=config.seed)
    out = write_records(records, valid_rows[selection.indices], config.out)
    rejected_path = write_rejected(records, config.out)
    n_rejected = len(records) - len(valid_rows)
    accounting = Accounting(read=len(records), rejected=n_rejected, selected=len(selection),
                            not_selected=len(valid_rows) - len(selection))
    report = {
        "input": str(config.input), "format": asdict(records.layout), "out": str(out),
        "rejected_file": str(rejected_path), "ranker": ranking.source, "budget": config.budget,
        "seed": config.seed, "accounting": asdict(accounting),
        "selected_ids": [str(i) for i in selection.ids], "settings": config.settings,
    }
    shifts = []
    if config.metric_summary:
        from selector.core.selection_summary import metric_shifts, to_dicts

        shifts = metric_shifts(scores, ranking.scores, selection.indices)
        report["metric_shifts"] = to_dicts(shifts)
    if ranking.meta.get("model"):
        report["selector_model"] = ranking.meta["model"]
    report_path = Path(f"{config.out}.report.json")
    atomic_write(report_path, [dumps(report)])
    return SelectResult(out, rejected_path, report_path, accounting, selection, ranking, records, shifts)
