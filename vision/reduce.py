"""One verb to shrink an image dataset: `reduce(data, budget, method=...)`.

A pruning method (random, herding, k-center, forgetting, ... from `vision.prune`) ranks the real images and `select`
keeps the best `budget` per class: the result is a `Selection` of real images. A condenser (dc, dsa, dm, idm, cafe
from `vision.condense`) learns `budget` synthetic images per class: the result is a `Reduction`, its sibling that
carries tensors where a Selection carries indices. `as_image_data(result, data)` turns either into the `ImageData`
a network trains on, so evaluation code does not care which way the dataset was shrunk.

    sel = reduce(train, 10, method="herding")            # Selection: 10 real images per class
    red = reduce(train, 10, method="dm", iterations=200)  # Reduction: 10 synthetic images per class
    evaluate_reduced(as_image_data(red, train), splits)   # see vision.evaluate
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selector.core.errors import MmselectError
from selector.core.ranking import Ranking, Selection, select
from vision.data import ImageData

__all__ = ["Reduction", "ReduceError", "reduce", "select_per_class", "as_image_data", "is_condenser"]


class ReduceError(MmselectError):
    """A reduction could not be made or loaded (unknown method, bad budget, unreadable file)."""


@dataclass(frozen=True)
class Reduction:
    """A learned synthetic set: images normalised like the source data, with labels and every setting used.

    `images` are the images a network trains on. For IDM (partition-and-expand) they are the decoded images; the
    stored images (`stored`, `ipc` per class) hold factor x factor of them each, so the storage budget is `ipc`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    method: str
    ipc: int
    settings: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    stored: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def as_data(self) -> ImageData:
        return ImageData(self.images.detach().cpu(), self.labels.cpu(), self.classes, self.mean, self.std, None,
                         f"{self.method}-ipc{self.ipc}")

    def save(self, path: str | Path) -> Path:
        """Write to `path` (torch format) through a temp file and rename."""
        from selector.core.io import atomic_write

        buf = io.BytesIO()
        torch.save({"format": "mmselect-reduction-1", "images": self.images.detach().cpu(),
                    "labels": self.labels.cpu(), "classes": list(self.classes), "mean": list(self.mean),
                    "std": list(self.std), "method": self.method, "ipc": self.ipc, "settings": self.settings,
                    "history": self.history,
                    "stored": None if self.stored is None else self.stored.detach().cpu()}, buf)
        path = Path(path)
        atomic_write(path, [buf.getvalue()])
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Reduction":
        try:
            obj = torch.load(Path(path), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as exc:
            raise ReduceError(f"{path}: cannot read a synthetic set ({exc}); write one with `mmselect condense`") from exc
        if not isinstance(obj, dict) or obj.get("format") != "mmselect-reduction-1":
            raise ReduceError(f"{path}: not a synthetic set written by `mmselect condense`")
        return cls(obj["images"], obj["labels"], tuple(obj["classes"]), tuple(obj["mean"]), tuple(obj["std"]),
                   obj["method"], int(obj["ipc"]), obj["settings"], obj["history"], obj.get("stored"))


def select_per_class(ranking: Ranking, labels: np.ndarray | torch.Tensor, ipc: int, seed: int = 0) -> Selection:
    """Keep the `ipc` best-ranked items of every class (all of a class that has fewer), through `select`.

    `ranking` must cover the dataset in order (ranking position i = dataset position i)."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if len(labels) != len(ranking):
        raise ReduceError(f"ranking has {len(ranking)} items for {len(labels)} images")
    if ipc < 1:
        raise ReduceError(f"images per class must be >= 1, got {ipc}")
    positions, quotas = [], {}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        sub = Ranking(ranking.ids[members], ranking.scores[members], None, ranking.source, ranking.meta)
        sel = select(sub, min(ipc, len(members)), seed=seed)
        positions.append(members[sel.indices])
        quotas[int(c)] = len(sel)
    idx = np.concatenate(positions).astype(np.int64)
    order = np.argsort(-np.nan_to_num(ranking.scores[idx], nan=-np.inf), kind="stable")
    idx = idx[order]
    return Selection(indices=idx, ids=ranking.ids[idx], scores=ranking.scores[idx], source=ranking.source,
                     budget=len(idx), quotas=quotas)


def is_condenser(method: str) -> bool:
    from vision.condense import CONDENSERS

    return method.lower() in CONDENSERS


def reduce(data: ImageData, budget: int | float, method: str = "random", *, unit: str = "ipc", seed: int = 0,
           **params) -> Selection | Reduction:
    """Shrink `data` to `budget` with `method` (a pruning ranker or a condenser).

    unit="ipc": `budget` images per class (pruning: the best `budget` of each class; condensing: `budget` learned
    images per class). unit="total" (pruning only): `budget` items overall, a count or a fraction, with the
    ranker's own groups: class quotas proportional to class sizes for class-balanced rankers (the default), one
    global cut for a ranker built with balancing off. `params` go to the ranker or the condenser's config.
    """
    key = method.lower()
    if unit not in ("ipc", "total"):
        raise ReduceError(f"unit must be 'ipc' or 'total', got {unit!r}")
    if is_condenser(key):
        if unit != "ipc" or isinstance(budget, float):
            raise ReduceError(f"{method} learns images per class: pass an integer budget with unit='ipc'")
        from vision.condense import build_condenser

        return build_condenser(key, ipc=int(budget), seed=seed, **params).condense(data)
    try:
        from vision.prune import build_ranker
    except ImportError as exc:  # the pruning package is another module's job; say so plainly
        raise ReduceError(f"pruning method {method!r} needs vision.prune ({exc})") from exc
    ranking = build_ranker(key, seed=seed, **params).rank(data)
    if unit == "ipc":
        if isinstance(budget, float):
            raise ReduceError("unit='ipc' needs an integer number of images per class")
        return select_per_class(ranking, data.labels, int(budget), seed=seed)
    return select(ranking, budget, seed=seed)


def as_image_data(result: Selection | Reduction | ImageData, data: ImageData | None = None) -> ImageData:
    """The training set a result stands for: the selected real images, or the synthetic ones."""
    if isinstance(result, ImageData):
        return result
    if isinstance(result, Reduction):
        return result.as_data()
    if isinstance(result, Selection):
        if data is None:
            raise ReduceError("a Selection holds positions: pass the dataset it was made from")
        return data.subset(result.indices)
    raise ReduceError(f"cannot train on a {type(result).__name__}; expected a Selection, Reduction or ImageData")
