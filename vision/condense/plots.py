"""Pictures of a synthetic set: the image grid (one row per class) and a t-SNE of real vs synthetic features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from selector.core.io import atomic_path
from vision.data import ImageData
from vision.train import embeddings

__all__ = ["save_grid", "save_tsne", "tsne_points"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(data: ImageData, path: str | Path, title: str = "") -> Path:
    """One row per class, images in pixel space ([0, 1] after undoing the normalisation)."""
    from torchvision.utils import make_grid

    plt = _plt()
    counts = data.class_counts()
    per_row = max(1, int(counts.max()))
    order = torch.argsort(data.labels, stable=True)
    rows = []
    for c in range(data.num_classes):
        imgs = data.denormalise(data.images[order][data.labels[order] == c])
        pad = torch.ones(per_row - len(imgs), *imgs.shape[1:])
        rows.append(torch.cat([imgs, pad]))
    grid = make_grid(torch.cat(rows), nrow=per_row, padding=1, pad_value=1.0)
    scale = max(1, -(-32 // data.images.shape[2]))  # show every image at >= 32 pixels
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    img = grid.permute(1, 2, 0).numpy()
    h, w = img.shape[:2]
    fig = plt.figure(figsize=(max(1.5, w / 100), max(1.5, h / 100) + (0.3 if title else 0)))
    plt.imshow(img[..., 0] if data.channels == 1 else img, cmap="gray" if data.channels == 1 else None,
               vmin=0, vmax=1)
    plt.axis("off")
    if title:
        plt.title(title, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def tsne_points(real_feats: np.ndarray, syn_feats: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-d t-SNE (sklearn) of real and synthetic features together; rows: real first, then synthetic."""
    from sklearn.manifold import TSNE

    x = np.concatenate([real_feats, syn_feats]).astype(np.float32)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def save_tsne(net: torch.nn.Module, real: ImageData, synthetic: ImageData, path: str | Path, *,
              max_real: int = 600, seed: int = 0, title: str = "") -> Path:
    """t-SNE of `net.embed` features: real images as small dots, synthetic ones as large stars, coloured by class
    (as in the CAFE paper's figure)."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(real))[:max_real]
    real = real.subset(np.sort(idx))
    fr = embeddings(net, real).numpy()
    fs = embeddings(net, synthetic).numpy()
    pts = tsne_points(fr, fs, seed)
    pr, ps = pts[: len(fr)], pts[len(fr):]
    cmap = plt.get_cmap("tab10" if real.num_classes <= 10 else "tab20")
    fig = plt.figure(figsize=(5.5, 5))
    plt.scatter(pr[:, 0], pr[:, 1], c=[cmap(int(c) % cmap.N) for c in real.labels], s=6, alpha=0.5, label="real")
    plt.scatter(ps[:, 0], ps[:, 1], c=[cmap(int(c) % cmap.N) for c in synthetic.labels], s=120, marker="*",
                edgecolors="black", linewidths=0.8, label="synthetic")
    plt.legend(loc="best", fontsize=8)
    plt.xticks([])
    plt.yticks([])
    plt.title(title or "t-SNE of real (dots) and synthetic (stars) features", fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
