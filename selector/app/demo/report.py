"""The demo report: a Markdown file with PNG plots (matplotlib, Agg) beside it.

- each scalar metric's distribution, clean vs corrupted records (truth.jsonl is read here for the report only);
- the share of each spectral cluster that was selected, per method;
- test accuracy bars per training set;
- the selector's training curve and the genuine labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.strict_json import dumps
from selector.learned.features import scalar_columns
from selector.core.io import atomic_path, atomic_write

METRIC_UNITS = {"length": "characters of answer", "clip": "100 x cosine similarity", "reward": "reward-model logit",
                "judge": "judge score"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Write `fig` to `out` atomically (PNG, 110 dpi, cropped to what is drawn) and free it."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")  # legends placed outside the axes stay in
    _plt().close(fig)
    return out


def plot_metric_distributions(table: pa.Table, truth: dict, out: Path) -> Path | None:
    names = scalar_columns(table)
    if not names:
        return None
    plt = _plt()
    ids = table.column("id").to_pylist()
    clean = np.array([truth[i]["clean"] for i in ids])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names) + 1.5, 3.2), squeeze=False)
    for ax, m in zip(axes[0], names):
        v = table.column(m).to_numpy(zero_copy_only=False).astype(float)
        ok = ~np.isnan(v)
        bins = np.histogram_bin_edges(v[ok], bins=30) if ok.any() else 10
        ax.hist(v[ok & clean], bins=bins, alpha=0.6, label="clean", color="tab:green")
        ax.hist(v[ok & ~clean], bins=bins, alpha=0.6, label="corrupted", color="tab:red")
        ax.set_title(f"{m}: {(ok & clean).sum()} clean, {(ok & ~clean).sum()} corrupted", fontsize=9)
        ax.set_xlabel(f"{m} ({METRIC_UNITS.get(m, 'score')})")
        ax.set_ylabel("records")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_cluster_shares(groups: np.ndarray | None, selections: dict, methods: list[str], out: Path) -> Path | None:
    if groups is None:
        return None
    plt = _plt()
    labels, sizes = np.unique(groups, return_counts=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / (len(methods) + 1)
    ax.bar(labels - 0.4 + width / 2, 100 * sizes / sizes.sum(), width, label="pool", color="grey")
    for k, name in enumerate(methods):
        sel = selections[name]
        g = groups[sel.indices]
        share = np.array([(g == lab).sum() for lab in labels]) / max(len(sel), 1)
        ax.bar(labels - 0.4 + width * (k + 1.5), 100 * share, width, label=name)
    ax.set_xlabel("spectral cluster of the image embeddings (cluster number)")
    ax.set_ylabel("share of the set (%)")
    ax.set_xticks(labels)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)


def accuracy_values(row: dict, key: str) -> np.ndarray:
    """A result row's accuracy per seed (`{key}_seeds`, when the run has several), else its single value."""
    seeds = row.get(f"{key}_seeds")
    values = seeds if seeds else [row[key]]
    return 100 * np.asarray([v for v in values if v is not None], dtype=float)


def plot_accuracy(results: list[dict], out: Path, key: str = "exact_match") -> Path | None:
    """Bars of test accuracy per training set: the mean over seeds, with +-1 std error bars where a row has
    several seeds (`{key}_seeds`)."""
    rows = [r for r in results if r.get(key) is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    per_row = [accuracy_values(r, key) for r in rows]
    vals = [float(v.mean()) for v in per_row]
    errs = [float(v.std(ddof=1)) if len(v) > 1 else 0.0 for v in per_row]
    bars = ax.bar(range(len(rows)), vals, yerr=errs if any(errs) else None, capsize=3,
                  color=["tab:blue" if "learned" in r["name"] else "tab:gray" for r in rows])
    for b, v, e in zip(bars, vals, errs):
        ax.text(b.get_x() + b.get_width() / 2, v + e, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_xlabel("training set (LoRA on the stage-1 model)")
    ax.set_ylabel(f"test {key.replace('_', ' ')} (%)")
    fig.tight_layout()
    return save_figure(fig, out)


def accuracy_caption(results: list[dict], key: str = "exact_match") -> str:
    """One sentence on the accuracy figure, saying so when the learned selection is not the best subset."""
    rows = [r for r in results if r.get(key) is not None]
    seeds = max((len(accuracy_values(r, key)) for r in rows), default=1)
    spread = (f"bars are the mean of {seeds} seeds with +-1 std error bars" if seeds > 1
              else "one seed per bar, so no error bars")
    text = f"Test {key.replace('_', ' ')} of the model fine-tuned on each training set ({spread})."
    learned = next((r for r in rows if "learned" in r["name"]), None)
    subsets = [r for r in rows if r is not learned and 0 < r.get("n", 0) and r["name"] != "full pool"]
    if learned is not None and subsets:
        best = max(subsets, key=lambda r: accuracy_values(r, key).mean())
        lv, bv = accuracy_values(learned, key).mean(), accuracy_values(best, key).mean()
        if bv > lv:
            text += (f" In this run the learned selection ({lv:.1f}) scores below {best['name']} ({bv:.1f}); one seed "
                     "of 400 test questions moves by a few points, so compare several seeds before concluding.")
    return text


def plot_training(history, labels, out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.0))
    epochs = np.arange(1, len(history.val_loss) + 1)
    axes[0].plot(epochs, history.train_loss, label="train")
    init = getattr(history, "init_val_loss", float("inf"))
    if np.isfinite(init):  # epoch 0: the initial weights (zero residual branches, or the ridge warm start)
        axes[0].plot(np.r_[0, epochs], np.r_[init, history.val_loss], label="validation")
    else:
        axes[0].plot(epochs, history.val_loss, label="validation")
    null = getattr(history, "null_val_loss", float("nan"))
    if np.isfinite(null):
        axes[0].axhline(null, color="grey", ls="--", label="validation, predicting the mean")
    kept = "initial weights" if history.best_epoch < 0 else f"epoch {history.best_epoch + 1}"
    axes[0].axvline(history.best_epoch + 1, color="k", ls=":", label=f"kept ({kept})")
    axes[0].set_xlabel("epoch (0 = initial weights)")
    axes[0].set_ylabel("set-level MSE (standardised labels)")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False, fontsize=8, ncol=2)
    axes[1].bar(range(len(labels.labels)), labels.labels)
    if labels.per_seed.shape[1] > 1:
        axes[1].errorbar(range(len(labels.labels)), labels.labels, yerr=labels.per_seed.std(axis=1, ddof=1),
                         fmt="none", color="k")
    axes[1].set_xlabel("label subset (number)")
    axes[1].set_xticks(range(len(labels.labels)))
    axes[1].set_ylabel("genuine label (median of seeds)")
    fig.tight_layout()
    return save_figure(fig, out)


def clean_share(ids, truth: dict[str, dict]) -> float:
    """Share of `ids` that truth.jsonl marks clean (for reporting only)."""
    ids = [str(i) for i in ids]
    return float(np.mean([truth[i]["clean"] for i in ids])) if ids else float("nan")


def format_table(rows: list[dict]) -> str:
    def f(v, pct=True):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        return f"{100 * v:.1f}" if pct else str(v)

    lines = [f"{'training set':<26} {'n':>5} {'clean %':>8} {'test EM %':>10} {'contains %':>11}"]
    for r in rows:
        lines.append(f"{r['name']:<26} {r['n']:>5} {f(r['clean']):>8} {f(r.get('exact_match')):>10} "
                     f"{f(r.get('contains')):>11}")
    return "\n".join(lines)


def _setting(value) -> str:
    if value is None:
        return "default"
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting(v) for v in value) or "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def settings_table(config: dict) -> list[str]:
    """The run's settings as a Markdown table, one setting a row, values as written on a command line."""
    return ["| setting | value |", "|---|---|"] + [f"| {k.replace('_', ' ')} | {_setting(v)} |"
                                                   for k, v in config.items()]


def write_report(out_dir: Path, *, results, table, truth, selections, groups, labels, history, timings,
                 config, selector_lines: list[str] = ()) -> Path:
    """`selector_lines`: how the selector was trained (label lr, signal test, model choice), shown as they are."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = {
        "metrics": plot_metric_distributions(table, truth, out_dir / "metric-distributions.png"),
        "clusters": plot_cluster_shares(groups, selections, [m for m in ("learned", "linear", "random",
                                                                           "metric:clip") if m in selections],
                                        out_dir / "cluster-shares.png"),
        "accuracy": plot_accuracy(results, out_dir / "accuracy.png"),
        "training": plot_training(history, labels, out_dir / "selector-training.png"),
    }
    lines = ["# mmselect demo: DigitsVQA", "", "## Settings", "", *settings_table(config), "",
             "## Results (test.jsonl, after LoRA on each training set)", "", "```", format_table(results), "```", "",
             "Clean share of every ranker's selection (truth.jsonl, report only):", ""]
    lines += [f"- {name}: {clean_share(sel.ids, truth):.3f}" for name, sel in selections.items()]
    lines += ["", f"Genuine labels: {len(labels.labels)} subsets, {labels.labels.min():.4f}..{labels.labels.max():.4f}, "
              f"spread (std across subsets) {labels.spread:.4f}, seed noise (std across seeds) {labels.noise:.4f}.",
              f"Selector: best validation epoch {history.best_epoch + 1} of {len(history.val_loss)} (0: the initial "
              f"weights; an ensemble's mean) with validation MSE {history.best_val_loss:.3f} against "
              f"{history.null_val_loss:.3f} for predicting the mean (standardised labels).", "",
              "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), ""]
    if selector_lines:
        lines += ["## How the selector was trained", "", "```", *selector_lines, "```", ""]
    titles = {"accuracy": "Test accuracy", "metrics": "Metric distributions, clean vs corrupted",
              "clusters": "Share of each spectral cluster in the selections",
              "training": "Selector training and genuine labels"}
    captions = {
        "accuracy": accuracy_caption(results),
        "metrics": "Each metric's scores over the valid train records, split by truth.jsonl into clean and "
                   "corrupted: a metric that separates the two can filter the noise.",
        "clusters": "Percent of the pool and of each selection in each spectral cluster of the image embeddings: a "
                    "selection close to the pool's shares keeps the pool's variety.",
        "training": "Left: the selector's set-level error per epoch against predicting the mean (the kept epoch "
                    "dotted); right: each label subset's genuine label, with the spread over seeds as error bars.",
    }
    for key, path in figs.items():
        if path is not None:
            lines += [f"## {titles[key]}", "", f"![{key}]({path.name})", "", captions[key], ""]
    report = out_dir / "report.md"
    atomic_write(report, ["\n".join(lines).encode()])
    atomic_write(out_dir / "results.json", [dumps({"results": results, "labels": labels.to_dict(),
                                                   "timings": timings})])
    return report
