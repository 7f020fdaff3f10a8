"""What shrinking an image dataset returns: a `Selection` of real images (from `vision.prune` rankers, via
`select_per_class`) or a `Reduction` of learned synthetic ones (from `vision.condense`), and `as_image_data`, which
turns either into the `ImageData` a network trains on. The verb that makes them is `vision.reduce.reduce`.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selector.core.errors import MmselectError
from selector.core.io import atomic_write
from selector.core.ranking import Ranking, Selection, select
from vision.data import ImageData

__all__ = ["Reduction", "ReduceError", "select_per_class", "as_image_data"]


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
                     budget=len(idx), quotas=quotas, ranking=ranking)


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
