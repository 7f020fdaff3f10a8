"""Run outputs written atomically: metrics.json, predictions.jsonl, rejected.jsonl."""
from __future__ import annotations

import json
import math
from pathlib import Path

from finetune.answers import contains, exact_match
from selector.core.io import atomic_write


def _clean(value):
    """JSON has no NaN: write it as null rather than produce a file strict parsers reject."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, obj: dict) -> Path:
    atomic_write(path, [json.dumps(_clean(obj), indent=2, sort_keys=True).encode(), b"\n"])
    return path


def write_predictions(path: Path, encoded, predictions: dict[str, str]) -> Path:
    rows = []
    for ex in encoded.examples:
        if ex.id in predictions:
            p = predictions[ex.id]
            rows.append({"id": ex.id, "reference": ex.answer, "prediction": p,
                         "exact_match": exact_match(p, ex.answer), "contains": contains(p, ex.answer)})
    atomic_write(path, (json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows))
    return path


def write_rejected(path: Path, rejected: list[dict]) -> Path:
    atomic_write(path, (json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rejected))
    return path
