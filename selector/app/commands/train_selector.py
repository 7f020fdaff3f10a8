"""`mmselect train-selector`: train the InstructionGPT-4 learned selector on a scored pool with genuine labels."""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.app.commands.common import (csv_list, float_list, input_dir, input_path, input_spec, output_dir,
                                          parquet_file, show_progress)

HELP = """Split the scored pool into K equal subsets (strata of the quality metrics), LoRA-fine-tune BASE_MODEL on each
with several seeds and evaluate it on EVAL_DATA: the subset's genuine quality label (cached under OUT/labels, so a re-run skips finished runs). The LoRA learning rate is derived
from BASE_MODEL's width unless --label-lr gives one or asks for a pilot. Training refuses, exiting 2 and
leaving no selector, when the labels do not vary across subsets beyond the seed noise (F-test), or when no model
beats predicting the mean label. Otherwise it cross-validates the attention network, the InstructMining linear fit
and each single metric on the labels and keeps the best (--model auto). OUT gets the selector (selector.json says
which model and why), the linear baseline (OUT/linear), labels.json, subsets.json and history.json.
Use it with `mmselect select INPUT --selector OUT`. Every default below is the one the benchmarks support."""


def label_lr(text: str) -> float | str:
    """A learning rate, or the name of the rule that finds one."""
    if text in ("derive", "pilot"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a learning rate, 'derive' or 'pilot', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a learning rate must be > 0, got {text!r}")
    return value


def _defaults():
    from selector.learned.config import SelectorConfig

    return SelectorConfig()


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    from selector.learned.choice import MODELS
    from selector.learned.signal import AGGREGATES, TRANSFORMS
    from selector.learned.subsets import METHODS

    d = _defaults()
    lab, t = d.labels, d.train
    p = sub.add_parser(name, help="train the learned selector (genuine labels from LoRA fine-tuning)",
                       description=HELP)
    p.add_argument("--data", type=input_spec, required=True,
                   help="the pool: any input `mmselect select` reads (instruction file, Parquet, save_to_disk, hf://, "
                        ".tar shards)")
    p.add_argument("--images", type=input_dir, help="images root of --data (default: its folder)")
    p.add_argument("--scores", type=parquet_file, required=True, help="score table of the pool from `mmselect score`")
    p.add_argument("--eval-data", type=input_path, required=True, help="held-out instruction file for the labels")
    p.add_argument("--eval-images", type=input_dir, help="images root of --eval-data")
    p.add_argument("--base-model", required=True, help="model to LoRA-fine-tune per subset (folder or hub id)")
    p.add_argument("--out", "-o", type=output_dir, required=True, help="selector folder")
    g = p.add_argument_group("labels")
    g.add_argument("--subsets", type=int, help=f"number of equal-size label subsets (default {lab.n_subsets})")
    g.add_argument("--subset-method", choices=METHODS,
                   help=f"metrics (default {lab.subset_method}): balanced k-means on the normalised quality "
                        "metrics (see --subset-balance), so subsets span them; random; or kmeans: balanced k-means "
                        "on image embeddings")
    g.add_argument("--subset-balance", choices=["content", "none"],
                   help=f"with --subset-method metrics: content (default "
                        f"{'content' if lab.balance_content else 'none'}) centres the metrics within each "
                        "image-embedding cluster and gives every subset each cluster in proportion, so a subset's "
                        "label measures quality, not its content; none: strata of the raw metrics")
    g.add_argument("--label-metric", choices=["eval_loss", "exact_match", "contains"],
                   help=f"eval metric used as the label (default {lab.metric}; losses are negated so higher is "
                        f"better)")
    g.add_argument("--label-seeds", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated LoRA seeds per subset; two or more measure the label noise that the "
                        f"signal test needs (default {','.join(map(str, lab.seeds))})")
    g.add_argument("--label-transform", choices=TRANSFORMS,
                   help=f"labels as fitted: rank (default {lab.transform}: normal scores of their ranks) or none")
    g.add_argument("--label-aggregate", choices=AGGREGATES,
                   help=f"how a subset's seeds become its label (default {lab.aggregate})")
    g.add_argument("--label-epochs", type=float, help=f"LoRA epochs per subset (default {lab.epochs:g})")
    g.add_argument("--label-lr", type=label_lr, metavar="RATE|derive|pilot",
                   help="LoRA learning rate of the label runs: a number; derive (default: from the base model's "
                        "width, 2e-4 x 4096 / hidden size, within [5e-5, 3e-3]); or pilot (measured on "
                        f"{lab.pilot_subsets} subsets x 2 seeds over --label-lr-grid, 16 extra runs)")
    g.add_argument("--label-lr-grid", type=float_list,
                   help=f"candidate rates of the pilot (default {','.join(f'{x:g}' for x in lab.lr_grid)})")
    g.add_argument("--signal-alpha", type=float,
                   help=f"level of the F-test that labels vary beyond the noise (default {lab.signal_alpha:g})")
    g = p.add_argument_group("model choice")
    g.add_argument("--model", choices=MODELS,
                   help="auto (default: the best by cross-validation), network, linear, or metric (the best "
                        "single metric)")
    g = p.add_argument_group("features")
    g.add_argument("--metrics", type=csv_list, help="scalar metric columns to use (default: all in the table)")
    g.add_argument("--image-embedding", default="embed-image", help="image embedding column ('' for none)")
    g.add_argument("--text-embedding", default="embed-text", help="text embedding column ('' for none)")
    g.add_argument("--extra-embedding", action="append", default=[], metavar="COLUMN",
                   help="another vector column of the score table as features, reduced like the embeddings; "
                        "repeatable. E.g. influence__grad, the PCA of the influence gradients that `mmselect score "
                        "--metrics influence --influence-gradient-dims 32` writes")
    g.add_argument("--pca-dims", type=int, default=6, help="PCA dims per embedding (default 6)")
    g.add_argument("--normalise", default="robust-z", choices=["robust-z", "z", "minmax", "rank", "none"])
    g.add_argument("--missing", default="impute-flag", choices=["impute-flag", "error"],
                   help="missing metric values: impute the fitted median and add a flag column (default), or fail")
    g = p.add_argument_group("network")
    g.add_argument("--layers", type=int, help=f"attention layers (default {d.n_layers})")
    g.add_argument("--heads", type=int, help=f"attention heads (default {d.n_heads})")
    g.add_argument("--d-model", type=int, help=f"width (default {d.d_model})")
    g.add_argument("--epochs", type=int, help=f"training epochs (default {t.epochs})")
    g.add_argument("--lr", type=float, help=f"AdamW learning rate (default {t.lr:g}; the paper's 0.01 departs "
                                            f"further from the linear warm start than noisy labels support)")
    g.add_argument("--ensemble", type=int,
                   help=f"networks averaged, each holding out its own fold of the subsets (default {t.ensemble})")
    g.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {t.weight_decay:g})")
    g.add_argument("--warm-start", choices=["ridge", "none"],
                   help="start the network as the InstructMining ridge fit (default) or from a random init (none)")
    g.add_argument("--clusters", type=int,
                   help=f"spectral clusters for the final selection's quotas (default {d.clusters.k})")
    p.add_argument("--seed", type=int, default=0)
    return p


def selector_config(ns: argparse.Namespace):
    """The `SelectorConfig` of the parsed flags: a flag left out keeps the config's default."""
    from dataclasses import replace

    from selector.learned.features import FeatureConfig
    from selector.learned.final import ClusterConfig

    d = _defaults()

    def given(**kw):
        return {k: v for k, v in kw.items() if v is not None}

    balance = None if ns.subset_balance is None else ns.subset_balance == "content"
    labels = replace(d.labels, **given(n_subsets=ns.subsets, subset_method=ns.subset_method, metric=ns.label_metric,
                                       balance_content=balance,
                                       seeds=ns.label_seeds, aggregate=ns.label_aggregate, transform=ns.label_transform,
                                       epochs=ns.label_epochs,
                                       lr=ns.label_lr if isinstance(ns.label_lr, float) else None,
                                       lr_rule=ns.label_lr if isinstance(ns.label_lr, str) else None,
                                       lr_grid=ns.label_lr_grid, signal_alpha=ns.signal_alpha))
    features = FeatureConfig(metrics=ns.metrics, image_embedding=ns.image_embedding or None,
                             text_embedding=ns.text_embedding or None, image_dims=ns.pca_dims,
                             text_dims=ns.pca_dims, extra_embeddings=tuple(ns.extra_embedding),
                             extra_dims=ns.pca_dims, normalise=ns.normalise, missing=ns.missing, seed=ns.seed)
    train = replace(d.train, seed=ns.seed, **given(epochs=ns.epochs, lr=ns.lr, ensemble=ns.ensemble,
                                                   weight_decay=ns.weight_decay, warm_start=ns.warm_start))
    return replace(d, features=features, labels=labels, choice=replace(d.choice, seed=ns.seed, **given(model=ns.model)),
                   train=train, clusters=ClusterConfig(seed=ns.seed, **given(k=ns.clusters)), seed=ns.seed,
                   **given(d_model=ns.d_model, n_layers=ns.layers, n_heads=ns.heads))


def run(ns: argparse.Namespace) -> int:
    from finetune.label import FinetuneLabel
    from selector.core.io import check_output_dir
    from selector.learned.train import TrainSelectorConfig, train_selector

    check_output_dir([ns.data if isinstance(ns.data, Path) else None, ns.images, ns.scores, ns.eval_data,
                      ns.eval_images], ns.out)

    try:
        sc = selector_config(ns)
    except ValueError as exc:
        from selector.core.errors import MmselectError

        raise MmselectError(str(exc)) from None
    lab = sc.labels
    label_fn = FinetuneLabel(base_model=str(ns.base_model), eval_data=str(ns.eval_data),
                             eval_images=str(ns.eval_images) if ns.eval_images else None,
                             work_dir=str(ns.out / "label-runs"), metric=lab.metric, epochs=lab.epochs, lr=lab.lr)
    result = train_selector(TrainSelectorConfig(data=ns.data, scores=ns.scores, out=ns.out, images=ns.images,
                                                selector=sc, progress=show_progress(ns)), label_fn)
    lab_res, choice = result.labels, result.fitted.choice
    print(f"selector in {result.out}: {result.fitted.selector.describe()}")
    print(f"labels: {len(lab_res.labels)} subsets x {len(lab_res.seeds)} seeds, {result.signal.line()}")
    print(result.lr_line())
    print("cross-validated on the subset labels (CV R^2; 0 = predicting the mean):")
    print("\n".join(choice.lines()))
    return 0
