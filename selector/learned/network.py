"""The InstructionGPT-4 selector network: self-attention over the samples WITHIN one subset, a per-sample score, and
set-level training (MSE of a subset's mean per-sample score against the subset's genuine label).

Fixes of the official code's bugs: attention is `batch_first=True`, so a batch of subsets never attends across
subsets; early stopping keeps a copy of the weights of the epoch with the lowest validation loss and restores it.

Variance control for the few, noisy subset labels a selector learns from (same architecture: residual MHA layers and
Linear(d_model, d_model) blocks, a Linear score head, set-level MSE):
- the output projections of both residual branches start at zero, so an untrained network IS a linear model of the
  sample's features (input projection -> head) and departs from it only as far as the labels pull it. The Linear
  block sits after the ReLU (`h + Linear(ReLU(h))`, a pre-activation residual block): with the ReLU after a
  zero-initialised Linear, its gradient would be zero forever;
- weight decay (AdamW) pulls every weight, the residual branches included, back towards zero;
- an ensemble of members, each with its own seeded initialisation and its own validation fold (K-fold over the
  subsets), whose predictions are averaged; the members' best validation losses are a cross-validated estimate.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from selector.learned.config import TrainConfig


@dataclass(frozen=True)
class NetworkConfig:
    d_in: int
    d_model: int = 16
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.0
    block: str = "preact"  # "preact": h + Linear(ReLU(h)); "postact": h + ReLU(Linear(h)) (selectors saved before it)
    zero_init_residual: bool = True  # residual branches' output projections start at zero (net starts linear)

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"unknown residual block {self.block!r}; choose one of {', '.join(BLOCKS)}")


BLOCKS = ("preact", "postact")


class SubsetSelector(nn.Module):
    """(batch of subsets, samples, features) -> (batch, samples) per-sample scores.

    Each layer: h = h + MHA(h) (attention over the samples of the same subset only), then h = h + Linear(ReLU(h))
    (`block="preact"`) or h + ReLU(Linear(h)) (`"postact"`). An input projection maps the feature width to d_model;
    a final Linear(d_model, 1) scores each sample. With `zero_init_residual` the attention's output projection and
    the block's Linear start at zero: the untrained network is the linear model head(inp(x))."""

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
        if config.zero_init_residual:
            for attn, ff in zip(self.attn, self.ff):
                nn.init.zeros_(attn.out_proj.weight)
                nn.init.zeros_(attn.out_proj.bias)
                if config.block == "preact":  # postact: ReLU(0 + 0) would pass no gradient, so keep its init
                    nn.init.zeros_(ff.weight)
                    nn.init.zeros_(ff.bias)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """`padding` (batch, samples) is True where a position is padding and must not be attended to."""
        h = self.inp(x)
        for attn, ff in zip(self.attn, self.ff):
            a, _ = attn(h, h, h, key_padding_mask=padding, need_weights=False)
            h = h + a
            h = h + (ff(torch.relu(h)) if self.config.block == "preact" else torch.relu(ff(h)))
        return self.head(h).squeeze(-1)


class SelectorEnsemble(nn.Module):
    """The mean of several `SubsetSelector`s' predictions, each mapped back to label units (member m predicts
    `shift[m] + scale[m] * output`, its own label standardisation), so members standardised on different training
    folds average on one scale."""

    def __init__(self, config: NetworkConfig, members: int):
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.config = config
        self.members = nn.ModuleList(SubsetSelector(config) for _ in range(members))
        self.register_buffer("shift", torch.zeros(members))
        self.register_buffer("scale", torch.ones(members))

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.stack([m(x, padding) for m in self.members])  # (members, batch, samples)
        return (self.shift[:, None, None] + self.scale[:, None, None] * out).mean(0)


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
    best_epoch: int = -1  # -1: no epoch beat the initial weights, which are kept
    best_val_loss: float = float("inf")
    init_val_loss: float = float("inf")  # validation loss of the initial weights (before any step)
    train_subsets: list[int] = field(default_factory=list)
    val_subsets: list[int] = field(default_factory=list)
    label_mean: float = 0.0
    label_std: float = 1.0
    null_val_loss: float = float("nan")  # validation MSE of predicting the training mean (the bar to beat)
    # Predicted labels (label units) of the validation subsets, before any step and after each epoch.
    val_pred: list[list[float]] = field(default_factory=list)


def split_subsets(k: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / validation split of subset indices (at least one of each when k >= 2 and val_fraction > 0)."""
    order = np.random.default_rng(seed).permutation(k)
    n_val = int(round(val_fraction * k))
    if val_fraction > 0 and k >= 2:
        n_val = min(max(n_val, 1), k - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


WARM_STARTS = ("none", "ridge")


def ridge_fit(features: list[np.ndarray], y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """InstructMining's linear map: ridge from each subset's mean feature vector to its label -> (w, b)."""
    from sklearn.linear_model import Ridge

    fit = Ridge(alpha=alpha).fit(np.stack([f.mean(axis=0) for f in features]).astype(np.float64), y)
    return fit.coef_.astype(np.float64), float(fit.intercept_)


def set_linear_path(model: SubsetSelector, w: np.ndarray, b: float) -> None:
    """Make head(inp(x)) = w . x + b exactly, keeping the random input projection up to a rank-one change:
    with u = head's weight, inp.weight += u (w - inp.weight^T u)^T / |u|^2, then head.bias = b - u . inp.bias.
    With zero residual branches the whole network then computes w . x + b per sample."""
    with torch.no_grad():
        u = model.head.weight[0].double()
        if float(u @ u) == 0.0:
            u = torch.ones_like(u) / u.numel() ** 0.5
            model.head.weight[0] = u.float()
        W = model.inp.weight.double()
        w_t = torch.as_tensor(w, dtype=torch.float64)
        model.inp.weight.copy_((W + torch.outer(u, w_t - W.T @ u) / (u @ u)).float())
        model.head.bias.fill_(float(b - u @ model.inp.bias.double()))


def train_network(features: list[np.ndarray], labels: np.ndarray, net: NetworkConfig | None = None,
                  config: TrainConfig = TrainConfig(), progress: bool = False,
                  val_subsets: np.ndarray | None = None, keep_states: bool = False
                  ) -> tuple[SubsetSelector, TrainHistory]:
    """Fit one selector network on subsets (`features[i]`: (size_i, d) for subset i with label `labels[i]`).

    Validation subsets: `val_subsets` when given, else a seeded `val_fraction` split. Returns the model holding the
    weights of the best validation epoch (the training loss when there is no validation split), and the history.
    With `keep_states` the model also carries `epoch_states`, the weights before training and after every epoch."""
    from selector.core.progress import progress_bar

    labels = np.asarray(labels, dtype=np.float64)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} subsets but {len(labels)} labels")
    if np.isnan(labels).any():
        raise ValueError("labels contain NaN; drop the failed subsets before training")
    net = net or NetworkConfig(d_in=features[0].shape[1])
    if config.warm_start not in WARM_STARTS:
        raise ValueError(f"unknown warm start {config.warm_start!r}; choose one of {', '.join(WARM_STARTS)}")
    if config.warm_start != "none" and not net.zero_init_residual:
        raise ValueError("a linear warm start needs zero_init_residual=True (else the net is not linear at init)")
    torch.manual_seed(config.seed)
    model = SubsetSelector(net)
    if val_subsets is None:
        tr, va = split_subsets(len(features), config.val_fraction, config.seed)
    else:
        va = np.sort(np.asarray(val_subsets, dtype=np.int64))
        tr = np.setdiff1d(np.arange(len(features)), va)
    hist = TrainHistory(train_subsets=tr.tolist(), val_subsets=va.tolist())
    if config.standardise_labels:
        hist.label_mean = float(labels[tr].mean())
        hist.label_std = float(labels[tr].std()) or 1.0
    y = torch.as_tensor((labels - hist.label_mean) / hist.label_std, dtype=torch.float32)
    if len(va):
        hist.null_val_loss = float(y[va].pow(2).mean()) if config.standardise_labels else float(
            (y[va] - y[tr].mean()).pow(2).mean())
    if config.warm_start == "ridge":
        set_linear_path(model, *ridge_fit([features[i] for i in tr], y[tr].numpy().astype(np.float64),
                                          config.ridge_alpha))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    best_state, since_best = copy.deepcopy(model.state_dict()), 0
    states = [best_state] if keep_states else None
    val_x = _pad([features[i] for i in va]) if len(va) else None

    def validate() -> float:
        with torch.no_grad():
            pred = set_scores(model, *val_x)
        hist.val_pred.append((hist.label_mean + hist.label_std * pred.double().numpy()).tolist())
        return float(nn.functional.mse_loss(pred, y[va]))

    if val_x is not None:  # the initial weights are a candidate too: training must beat them to replace them
        model.eval()
        hist.init_val_loss = hist.best_val_loss = validate()

    bar = progress_bar(range(config.epochs), desc="train selector", unit="epoch", disable=not progress)
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
        v = validate() if val_x is not None else hist.train_loss[-1]
        hist.val_loss.append(v)
        if states is not None:
            states.append(copy.deepcopy(model.state_dict()))
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
    if states is not None:
        model.epoch_states = states  # index 0: the initial weights, e + 1: after epoch e
    return model, hist


def member_seed(seed: int, member: int) -> int:
    """A distinct, reproducible seed per (seed, member); member 0 of seed s is s itself."""
    if member == 0:
        return seed
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0])


def member_folds(k: int, config: TrainConfig) -> list[np.ndarray | None]:
    """Validation subsets per ensemble member: one seeded `val_fraction` split for a single member, else the folds
    of a seeded K-fold split (K = members), so every subset validates exactly one member."""
    if config.ensemble == 1 or config.val_fraction <= 0 or k < 2:
        return [None] * config.ensemble
    if config.ensemble > k:
        raise ValueError(f"an ensemble of {config.ensemble} cross-validated members needs at least as many subsets, "
                         f"got {k}")
    order = np.random.default_rng(config.seed).permutation(k)
    return [np.sort(f) for f in np.array_split(order, config.ensemble)]


def train_ensemble(features: list[np.ndarray], labels: np.ndarray, net: NetworkConfig | None = None,
                   config: TrainConfig = TrainConfig(), progress: bool = False
                   ) -> tuple[SelectorEnsemble, list[TrainHistory]]:
    """`config.ensemble` networks (each its own seed and validation fold, best checkpoint kept), averaged."""
    from dataclasses import replace

    net = net or NetworkConfig(d_in=features[0].shape[1])
    if config.epoch_choice not in EPOCH_CHOICES:
        raise ValueError(f"unknown epoch choice {config.epoch_choice!r}; choose one of {', '.join(EPOCH_CHOICES)}")
    folds = member_folds(len(features), config)
    pooled = config.epoch_choice == "pooled" and all(f is not None for f in folds)
    models, hists = [], []
    for m, fold in enumerate(folds):
        model, hist = train_network(features, labels, net, replace(config, seed=member_seed(config.seed, m)),
                                    progress=progress, val_subsets=fold, keep_states=pooled)
        models.append(model)
        hists.append(hist)
    if pooled:
        epoch = pooled_best_epoch(hists, labels)
        for model, hist in zip(models, hists):
            model.load_state_dict(model.epoch_states[epoch + 1])
            del model.epoch_states
            hist.best_epoch, hist.best_val_loss = epoch, hist.val_loss[epoch] if epoch >= 0 else hist.init_val_loss
    ens = SelectorEnsemble(net, len(models))
    for m, (model, hist) in enumerate(zip(models, hists)):
        ens.members[m].load_state_dict(model.state_dict())
        ens.shift[m], ens.scale[m] = hist.label_mean, hist.label_std
    ens.eval()
    return ens, hists


EPOCH_CHOICES = ("pooled", "member")


def out_of_fold(hists: list[TrainHistory], k: int, epoch: int | None = None) -> np.ndarray:
    """Each subset's predicted label from the member that held it out, at `epoch` (-1: before training; None: the
    epoch each member kept)."""
    pred = np.full(k, np.nan)
    for h in hists:
        pred[h.val_subsets] = h.val_pred[(h.best_epoch if epoch is None else epoch) + 1]
    return pred


def pooled_best_epoch(hists: list[TrainHistory], labels: np.ndarray) -> int:
    """The epoch (-1 = the initial weights) with the lowest out-of-fold squared error over all subsets; the
    earliest wins a tie. Every member must have trained the same number of epochs (no patience)."""
    y = np.asarray(labels, dtype=np.float64)
    n = min(len(h.val_pred) for h in hists)
    errors = [float(np.mean((out_of_fold(hists, len(y), e) - y) ** 2)) for e in range(-1, n - 1)]
    return int(np.argmin(errors)) - 1


def combined_history(hists: list[TrainHistory]) -> TrainHistory:
    """One history for an ensemble: per-epoch mean curves, mean best validation loss (cross-validated when the
    members have their own folds), the rounded mean best epoch, and the union of validation subsets."""
    if len(hists) == 1:
        return hists[0]
    n = min(len(h.val_loss) for h in hists)
    return TrainHistory(
        train_loss=np.mean([h.train_loss[:n] for h in hists], axis=0).tolist(),
        val_loss=np.mean([h.val_loss[:n] for h in hists], axis=0).tolist(),
        best_epoch=int(round(np.mean([h.best_epoch for h in hists]))),
        best_val_loss=float(np.mean([h.best_val_loss for h in hists])),
        init_val_loss=float(np.mean([h.init_val_loss for h in hists])),
        train_subsets=sorted(set().union(*(h.train_subsets for h in hists))),
        val_subsets=sorted(set().union(*(h.val_subsets for h in hists))),
        label_mean=float(np.mean([h.label_mean for h in hists])), label_std=float(np.mean([h.label_std for h in hists])),
        null_val_loss=float(np.mean([h.null_val_loss for h in hists])))


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


def save_network(model: SubsetSelector | SelectorEnsemble, out_dir: Path, extra: dict | None = None) -> None:
    """`selector.safetensors` (weights) + `network.json` (architecture, ensemble size and `extra`)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    members = {"members": len(model.members)} if isinstance(model, SelectorEnsemble) else {}
    tmp = out_dir / "selector.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(out_dir / "selector.safetensors")
    from selector.core.io import atomic_write

    atomic_write(out_dir / "network.json",
                 [json.dumps({"network": asdict(model.config), **members, **(extra or {})}, indent=2).encode()])


def load_network(out_dir: Path) -> tuple[SubsetSelector | SelectorEnsemble, dict]:
    """The saved network; one saved before the block and init options existed is the post-activation block."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "network.json").read_text())
    cfg = {"block": "postact", "zero_init_residual": False, **meta["network"]}
    members = meta.pop("members", None)
    model = SubsetSelector(NetworkConfig(**cfg)) if members is None else SelectorEnsemble(NetworkConfig(**cfg), members)
    model.load_state_dict(load_file(str(out_dir / "selector.safetensors")))
    model.eval()
    return model, meta
