"""Strict JSON for every file mmselect writes: NaN and infinities are not JSON, so they are written as null."""
from __future__ import annotations

import json
import math

import numpy as np


def _clean(value):
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(obj, indent: int | None = 2) -> bytes:
    """UTF-8 bytes of `obj` as strict JSON; paths and other objects are written as strings."""
    return json.dumps(_clean(obj), indent=indent, allow_nan=False, default=str).encode()
