"""`mmselect train-selector`: train the InstructionGPT-4 learned selector on a scored pool with genuine labels."""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.app.commands.common import csv_list, show_progress

HELP = """Split the scored pool into K equal subsets, LoRA-fine-tune BASE_MODEL on each and evaluate it on EVAL_DATA
(the subset's genuine quality label, cached under OUT/labels so a re-run skips finished subsets), then train the
within-subset self-attention selector on those labels. OUT gets the selector (selector.safetensors, network.json,
features.json with the fitted normaliser and PCA), an InstructMining linear baseline (OUT/linear), labels.json and
history.json. Use it with `mmselect select INPUT --selector OUT`."""


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="train the learned selector (genuine labels from LoRA fine-tuning)",
                       description=HELP)
    p.add_argument("--data", type=Path, required=True, help="the pool (instruction file)")
    p.add_argument("--images", type=Path, help="images root of --data (default: its folder)")
    p.add_argument("--scores", type=Path, required=True, help="score table of the pool from `mmselect score`")
    p.add_argument("--eval-data", type=Path, required=True, help="held-out instruction file for the labels")
    p.add_argument("--eval-images", type=Path, help="images root of --eval-data")
    p.add_argument("--base-model", required=True, help="model to LoRA-fine-tune per subset (folder or hub id)")
    p.add_argument("--out", "-o", type=Path, required=True, help="selector folder")
    g = p.add_argument_group("labels")
    g.add_argument("--subsets", type=int, default=30, help="number of equal-size label subsets (default 30)")
    g.add_argument("--subset-method", choices=["kmeans", "random"], default="kmeans",
                   help="k-means on image embeddings rebalanced to equal size (default), or random")
    g.add_argument("--label-metric", default="exact_match",
                   help="eval metric used as label: exact_match (default), contains, or eval_loss (negated)")
    g.add_argument("--label-seeds", type=lambda s: tuple(int(x) for x in s.split(",")), default=(0,),
                   help="comma-separated fine-tuning seeds per subset; several measure label noise (default 0)")
    g.add_argument("--label-epochs", type=float, default=3.0, help="LoRA epochs per subset (default 3)")
    g.add_argument("--label-lr", type=float, default=2e-4)
    g = p.add_argument_group("features")
    g.add_argument("--metrics", type=csv_list, help="scalar metric columns to use (default: all in the table)")
    g.add_argument("--image-embedding", default="embed-image", help="image embedding column ('' for none)")
    g.add_argument("--text-embedding", default="embed-text", help="text embedding column ('' for none)")
    g.add_argument("--pca-dims", type=int, default=6, help="PCA dims per embedding (default 6)")
    g.add_argument("--normalise", default="robust-z", choices=["robust-z", "z", "minmax", "rank", "none"])
    g.add_argument("--missing", default="impute-flag", choices=["impute-flag", "error"],
                   help="missing metric values: impute the fitted median and add a flag column (default), or fail")
    g = p.add_argument_group("network")
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--d-model", type=int, default=16)
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--lr", type=float, default=1e-3, help="Adam(W) learning rate (default 1e-3; the paper's 0.01 "
                   "departs further from the linear warm start than noisy labels support)")
    g.add_argument("--val-fraction", type=float, default=0.2, help="share of subsets held out for early stopping")
    g.add_argument("--patience", type=int, help="stop after this many epochs without validation improvement")
    g.add_argument("--ensemble", type=int,
                   help="networks averaged, each validated on its own fold of the subsets (default 5)")
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0)")
    g.add_argument("--warm-start", choices=["ridge", "none"],
                   help="start the network as the InstructMining ridge fit (default) or from a random init (none)")
    g.add_argument("--clusters", type=int, default=10, help="spectral clusters for the final selection (default 10)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(ns: argparse.Namespace) -> int:
    from selector.learned.features import FeatureConfig
    from selector.learned.final import ClusterConfig
    from selector.learned.labels import FinetuneLabel
    from selector.learned.network import TrainConfig
    from selector.learned.train import SelectorConfig, TrainSelectorConfig, train_selector

    features = FeatureConfig(metrics=ns.metrics, image_embedding=ns.image_embedding or None,
                             text_embedding=ns.text_embedding or None, image_dims=ns.pca_dims,
                             text_dims=ns.pca_dims, normalise=ns.normalise, missing=ns.missing, seed=ns.seed)
    optional = {k: getattr(ns, k) for k in ("ensemble", "weight_decay", "warm_start") if getattr(ns, k) is not None}
    sc = SelectorConfig(features=features, n_subsets=ns.subsets, subset_method=ns.subset_method, d_model=ns.d_model,
                        n_layers=ns.layers, n_heads=ns.heads,
                        train=TrainConfig(epochs=ns.epochs, lr=ns.lr, val_fraction=ns.val_fraction,
                                          patience=ns.patience, seed=ns.seed, **optional),
                        clusters=ClusterConfig(k=ns.clusters, seed=ns.seed), seed=ns.seed)
    label_fn = FinetuneLabel(base_model=str(ns.base_model), eval_data=str(ns.eval_data),
                             eval_images=str(ns.eval_images) if ns.eval_images else None,
                             work_dir=str(ns.out / "label-runs"), metric=ns.label_metric, epochs=ns.label_epochs,
                             lr=ns.label_lr)
    result = train_selector(TrainSelectorConfig(data=ns.data, scores=ns.scores, out=ns.out, images=ns.images,
                                                selector=sc, label_seeds=ns.label_seeds,
                                                progress=show_progress(ns)), label_fn)
    h, lab = result.fitted.history, result.labels
    print(f"selector in {result.out}: {len(lab.labels)} subsets, labels {lab.labels.min():.4f}..{lab.labels.max():.4f}"
          f" (spread {lab.spread:.4f}, seed noise {lab.noise:.4f}); best epoch {h.best_epoch + 1}/{len(h.val_loss)}, "
          f"validation MSE {h.best_val_loss:.4f} (predicting the mean: {h.null_val_loss:.4f})")
    return 0
