"""What every metric is: a named scorer of record batches that loads its model once and does no I/O of its own."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass
class Batch:
    """A batch of records as metrics see them. `images` holds whatever the metric's `preprocess` returned."""

    ids: list[str]
    instructions: list[str]
    answers: list[str]
    images: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


class Metric:
    """Base class. Subclasses set `name`, `needs` and `kind`, and implement `score`.

    - `needs`: subset of {"text", "image"}; image metrics get `preprocess(path)` applied in loader workers.
    - `kind`: "scalar" (one float per record) or "vector" (an embedding per record).
    - `higher_is_better`: the direction used when the metric ranks records on its own.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"text"})
    kind: ClassVar[str] = "scalar"
    higher_is_better: ClassVar[bool] = True

    def config(self) -> dict[str, Any]:
        """Everything that changes the scores; hashed into the score-cache key."""
        return {}

    def config_hash(self) -> str:
        blob = json.dumps({"metric": self.name, **self.config()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def setup(self, device: str = "cpu") -> None:
        """Load models once, onto `device`."""

    def preprocess(self, image_path: str) -> Any:
        """Decode one image (runs in a DataLoader worker)."""
        return image_path

    def score(self, batch: Batch) -> np.ndarray:
        raise NotImplementedError
