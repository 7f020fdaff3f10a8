"""The InstructionGPT-4 selector network: self-attention over the samples WITHIN one subset, a per-sample score, and
set-level training (MSE of a subset's mean per-sample score against the subset's genuine label).

Fixes of the official code's bugs: attention is `batch_first=True`, so a batch of subsets never attends across
subsets; early stopping keeps a copy of the weights of the epoch with the lowest validation loss and restores it.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    d_in: int
    d_model: int = 16
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    lr: float = 0.01
    batch_subsets: int = 1  # one optimiser step per subset (set-level regression has few examples)
    val_fraction: float = 0.2
    patience: int | None = None  # stop after this many epochs without improvement (None: run all epochs)
    standardise_labels: bool = True  # regress (label - mean) / std: labels spread over a narrow range
    seed: int = 0


class SubsetSelector(nn.Module):
    """(batch of subsets, samples, features) -> (batch, samples) per-sample scores.

    Each layer: h = h + MHA(h) (attention over the samples of the same subset only), then h = h + ReLU(Linear(h)).
    An input projection maps the feature width to d_model; a final Linear(d_model, 1) scores each sample."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(f"d_model {config.d_model} is not divisible by n_heads {config.n_heads}")
        self.config = config
        self.inp = nn.Linear(config.d_in, config.d_model)
        self.attn = nn.ModuleList(nn.MultiheadAttention(config.d_model, config.n_heads, dropout=config.dropout,
                                                        batch_first=True) for _ in range(config.n_layers))
        self.ff = nn.ModuleList(nn.Linear(config.d_model, config.d_model) for _ in range(config.n_layers))
        self.head = nn.Linear(config.d_model, 1)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """`padding` (batch, samples) is True where a position is padding and must not be attended to."""
        h = self.inp(x)
        for attn, ff in zip(self.attn, self.ff):
            a, _ = attn(h, h, h, key_padding_mask=padding, need_weights=False)
            h = h + a
            h = h + torch.relu(ff(h))
        return self.head(h).squeeze(-1)


def set_scores(model: SubsetSelector, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-sample score of each subset in the batch (padding excluded)."""
    s = model(x, padding)
    if padding is None:
        return s.mean(dim=1)
    keep = (~padding).float()
    return (s * keep).sum(1) / keep.sum(1)


def _pad(groups: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    m = max(len(g) for g in groups)
    d = groups[0].shape[1]
    x = torch.zeros(len(groups), m, d)
    pad = torch.ones(len(groups), m, dtype=torch.bool)
    for i, g in enumerate(groups):
        x[i, : len(g)] = torch.as_tensor(g, dtype=torch.float32)
        pad[i, : len(g)] = False
    return x, pad


@dataclass
class TrainHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    train_subsets: list[int] = field(default_factory=list)
    val_subsets: list[int] = field(default_factory=list)
    label_mean: float = 0.0
    label_std: float = 1.0


def split_subsets(k: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / validation split of subset indices (at least one of each when k >= 2 and val_fraction > 0)."""
    order = np.random.default_rng(seed).permutation(k)
    n_val = int(round(val_fraction * k))
    if val_fraction > 0 and k >= 2:
        n_val = min(max(n_val, 1), k - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_network(features: list[np.ndarray], labels: np.ndarray, net: NetworkConfig | None = None,
                  config: TrainConfig = TrainConfig(), progress: bool = False) -> tuple[SubsetSelector, TrainHistory]:
    """Fit the selector on subsets (`features[i]`: (size_i, d) for subset i with label `labels[i]`).

    Returns the model holding the weights of the best validation epoch (the training loss when there is no
    validation split), and the loss history."""
    from tqdm.auto import tqdm

    labels = np.asarray(labels, dtype=np.float64)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} subsets but {len(labels)} labels")
    if np.isnan(labels).any():
        raise ValueError("labels contain NaN; drop the failed subsets before training")
    net = net or NetworkConfig(d_in=features[0].shape[1])
    torch.manual_seed(config.seed)
    model = SubsetSelector(net)
    tr, va = split_subsets(len(features), config.val_fraction, config.seed)
    hist = TrainHistory(train_subsets=tr.tolist(), val_subsets=va.tolist())
    if config.standardise_labels:
        hist.label_mean = float(labels[tr].mean())
        hist.label_std = float(labels[tr].std()) or 1.0
    y = torch.as_tensor((labels - hist.label_mean) / hist.label_std, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    best_state, since_best = copy.deepcopy(model.state_dict()), 0
    val_x = _pad([features[i] for i in va]) if len(va) else None

    bar = tqdm(range(config.epochs), desc="train selector", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        perm = tr[torch.randperm(len(tr), generator=gen).numpy()]
        total = 0.0
        for start in range(0, len(perm), config.batch_subsets):
            idx = perm[start: start + config.batch_subsets]
            x, pad = _pad([features[i] for i in idx])
            loss = nn.functional.mse_loss(set_scores(model, x, pad), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        hist.train_loss.append(total / max(len(tr), 1))
        model.eval()
        with torch.no_grad():
            if val_x is not None:
                v = float(nn.functional.mse_loss(set_scores(model, *val_x), y[va]))
            else:
                v = hist.train_loss[-1]
        hist.val_loss.append(v)
        if v < hist.best_val_loss:
            hist.best_val_loss, hist.best_epoch, since_best = v, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        bar.set_postfix(train=f"{hist.train_loss[-1]:.3f}", val=f"{v:.3f}")
        if config.patience is not None and since_best >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, hist


def validation_loss(model: SubsetSelector, features: list[np.ndarray], labels: np.ndarray,
                    hist: TrainHistory) -> float:
    """Validation MSE (standardised labels) of `model` on the history's validation subsets."""
    va = hist.val_subsets
    x, pad = _pad([features[i] for i in va])
    y = torch.as_tensor((np.asarray(labels)[va] - hist.label_mean) / hist.label_std, dtype=torch.float32)
    with torch.no_grad():
        return float(nn.functional.mse_loss(set_scores(model, x, pad), y))


def score_pool(model: SubsetSelector, x: np.ndarray, subset_size: int, passes: int = 8, seed: int = 0,
               batch_subsets: int = 64) -> np.ndarray:
    """Per-sample scores for a whole pool, each sample scored in the context of a subset like those of training.

    The pool is split `passes` times into random chunks of `subset_size` (seeded); a sample's score is its mean over
    the passes. Attention never spans more than one chunk."""
    n = len(x)
    if n == 0:
        return np.zeros(0)
    size = max(1, min(subset_size, n))
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    model.eval()
    for _ in range(passes):
        order = rng.permutation(n)
        chunks = [order[i: i + size] for i in range(0, n, size)]
        for start in range(0, len(chunks), batch_subsets):
            group = chunks[start: start + batch_subsets]
            xb, pad = _pad([x[c] for c in group])
            with torch.no_grad():
                s = model(xb, pad).numpy()
            for row, c in enumerate(group):
                total[c] += s[row, : len(c)]
    return total / passes


def save_network(model: SubsetSelector, out_dir: Path, extra: dict | None = None) -> None:
    """`selector.safetensors` (weights) + `network.json` (architecture and `extra`)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "selector.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(out_dir / "selector.safetensors")
    from selector.records import atomic_write

    atomic_write(out_dir / "network.json",
                 [json.dumps({"network": asdict(model.config), **(extra or {})}, indent=2).encode()])


def load_network(out_dir: Path) -> tuple[SubsetSelector, dict]:
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "network.json").read_text())
    model = SubsetSelector(NetworkConfig(**meta["network"]))
    model.load_state_dict(load_file(str(out_dir / "selector.safetensors")))
    model.eval()
    return model, meta
