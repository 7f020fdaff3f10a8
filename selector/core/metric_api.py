"""What every metric is: a named scorer of record batches that loads its model once and does no I/O of its own."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol

import numpy as np


@dataclass
class Batch:
    """A batch of records as metrics see them. `images` holds whatever the metric's preprocessor returned
    (stacked into one tensor when every item is a tensor of the same shape); `image_errors[i]` says why item i has
    no image (None when it has one)."""

    ids: list[str]
    instructions: list[str]
    answers: list[str]
    images: Any = None
    image_errors: list[str | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> "Batch":
        """The records at positions `keep` (a sorted integer array)."""
        idx = [int(i) for i in keep]
        images = self.images
        if images is not None:
            images = images[np.asarray(idx)] if hasattr(images, "shape") else [images[i] for i in idx]
        errors = [self.image_errors[i] for i in idx] if self.image_errors is not None else None
        return Batch([self.ids[i] for i in idx], [self.instructions[i] for i in idx],
                     [self.answers[i] for i in idx], images, errors, dict(self.extra))


@dataclass
class Scored:
    """A metric's output for a batch when some records have no score.

    `values[i]` is NaN (scalar) or a NaN row (vector) exactly where `reasons[i]` says why; `extra` holds per-record
    side columns (e.g. `truncated`) that the runner writes as `<metric>__<key>`.
    """

    values: np.ndarray
    reasons: list[str | None] | None = None
    extra: dict[str, list] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.values)
        if self.reasons is not None and len(self.reasons) != n:
            raise ValueError(f"{len(self.reasons)} reasons for {n} values")
        for key, col in self.extra.items():
            if len(col) != n:
                raise ValueError(f"extra column {key!r} has {len(col)} rows for {n} values")


def as_scored(out: "np.ndarray | Scored", n: int, name: str) -> Scored:
    """Normalise a metric's return value; NaN without a stated reason gets reason 'nan score'."""
    scored = out if isinstance(out, Scored) else Scored(np.asarray(out))
    if len(scored.values) != n:
        raise ValueError(f"metric {name!r} returned {len(scored.values)} scores for a batch of {n}")
    values = np.asarray(scored.values, dtype=np.float64 if np.ndim(scored.values) <= 1 else np.float32)
    nan = np.isnan(values) if values.ndim == 1 else np.isnan(values).any(axis=1)
    if scored.reasons is None and not nan.any():
        reasons = [None] * n
    else:
        reasons = list(scored.reasons) if scored.reasons is not None else [None] * n
        reasons = [r if r is not None or not bad else "nan score" for r, bad in zip(reasons, nan)]
    return Scored(values, reasons, scored.extra)


def config_key(name: str, config: dict[str, Any]) -> str:
    """16 hex digits of a metric's name and configuration: the key of its caches."""
    blob = json.dumps({"metric": name, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SharedLimit:
    """A limit on a metric's requests in flight that holds across every copy of the metric in one run (one per Ray
    actor, say), not per copy."""

    slots: int
    lease_s: float  # a slot still held after this long is taken back: its holder died or hung


class Limiter(Protocol):
    """The engine's run-wide counter of a `SharedLimit`: `acquire` blocks until a slot is free and returns a token;
    `release(token)` frees it (call it in `finally`)."""

    def acquire(self) -> Any: ...

    def release(self, token: Any) -> None: ...


class Metric:
    """Base class. Subclasses set `name`, `needs` and `kind`, and implement `score`.

    - `needs`: subset of {"text", "image"}; image metrics get their preprocessor applied in loader workers.
    - `kind`: "scalar" (one float per record) or "vector" (an embedding per record).
    - `higher_is_better`: the direction used when the metric ranks records on its own.
    - `score(batch)` returns an array, or a `Scored` when some records cannot be scored (missing with a reason;
      never a made-up default).
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"text"})
    kind: ClassVar[str] = "scalar"
    higher_is_better: ClassVar[bool] = True
    uses_torch: bool = True  # False lets the runner skip importing torch (seconds) for metrics like length

    def config(self) -> dict[str, Any]:
        """Everything that changes the scores; hashed into the score-cache key."""
        return {}

    def config_hash(self) -> str:
        return config_key(self.name, self.config())

    @property
    def column(self) -> str:
        """Name of this metric's column in the score table."""
        return self.name

    def setup(self, device: str = "cpu") -> None:
        """Load models once, onto `device`."""

    def preprocess(self, image_path: str) -> Any:
        """Decode one image (runs in a DataLoader worker)."""
        return image_path

    def preprocessor(self) -> Callable[[str], Any]:
        """A picklable callable for loader workers (override to avoid shipping a loaded model to workers)."""
        return self.preprocess

    def image_transform(self) -> Callable[[Any], Any] | None:
        """The preprocessing applied to an image already decoded to RGB (by the validating decode), so the image is
        not decoded twice; None when the metric needs the file itself (after `setup`)."""
        return None

    def preprocess_key(self) -> str | None:
        """Metrics with the same key share one decoding pass over the images (None: not an image metric)."""
        return f"{self.name}:{self.config_hash()}" if "image" in self.needs else None

    def stats(self) -> dict[str, Any]:
        """Run-level counters worth reporting (e.g. truncations); stored in the score table's metadata."""
        return {}

    def shared_limit(self) -> SharedLimit | None:
        """The limit an engine that runs several copies of this metric must enforce across all of them with one
        `Limiter` (given to `share_limit` before `setup`); None: no such limit."""
        return None

    def share_limit(self, limiter: Limiter) -> None:
        """Take the run-wide limiter of `shared_limit` (called before `setup`)."""

    columnar: ClassVar[bool] = False

    def score_column(self, table: Any) -> np.ndarray:
        """Whole-table scoring for `columnar` metrics: one vectorised pass over a pyarrow.Table (columns id,
        instruction, answer, images). Such metrics skip batching and the score cache, because recomputing them costs
        less than reading a cache."""
        raise NotImplementedError(f"metric {self.name!r} is not columnar")

    def score(self, batch: Batch) -> "np.ndarray | Scored":
        raise NotImplementedError
