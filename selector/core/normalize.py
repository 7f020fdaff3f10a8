"""Per-metric normalisation, so metrics on different scales can be combined (InstructionGPT-4's GPT scores saturate)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("robust-z", "z", "minmax", "rank", "none")


@dataclass(frozen=True)
class Normaliser:
    """A fitted per-column affine map `(x - center) / scale`, or a rank transform; NaN stays NaN."""

    method: str
    center: np.ndarray
    scale: np.ndarray
    reference: np.ndarray | None = None  # sorted fitted values per column, for method "rank"

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.method == "rank":
            out = np.empty_like(x)
            for j in range(x.shape[1]):
                ref = self.reference[j]
                out[:, j] = np.searchsorted(ref, x[:, j], side="right") / max(len(ref), 1)
            out[np.isnan(x)] = np.nan
            return out
        return (x - self.center) / self.scale


def fit_normaliser(x: np.ndarray, method: str = "robust-z") -> Normaliser:
    """Fit on the columns of `x` (n x d), ignoring NaN. robust-z: median and 1.4826 x MAD (std if MAD is 0)."""
    if method not in METHODS:
        raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[1]
    center, scale = np.zeros(d), np.ones(d)
    reference = None
    for j in range(d):
        col = x[:, j][~np.isnan(x[:, j])]
        if len(col) == 0:
            continue
        if method == "robust-z":
            center[j] = np.median(col)
            mad = 1.4826 * np.median(np.abs(col - center[j]))
            scale[j] = mad if mad > 0 else (col.std() or 1.0)
        elif method == "z":
            center[j], scale[j] = col.mean(), (col.std() or 1.0)
        elif method == "minmax":
            center[j], scale[j] = col.min(), ((col.max() - col.min()) or 1.0)
    if method == "rank":
        reference = [np.sort(x[:, j][~np.isnan(x[:, j])]) for j in range(d)]
    return Normaliser(method, center, scale, reference)
