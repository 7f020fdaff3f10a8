"""Metrics registered by name, so the CLI and the score cache can refer to them as strings."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from metrics.base import Metric

_REGISTRY: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"metric {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def metric_class(name: str) -> type[Metric]:
    if name in BUILTIN:  # import just the module that defines it: a length-only run skips the model metrics
        importlib.import_module(BUILTIN[name])
    else:
        _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def build(name: str, **params: Any) -> Metric:
    return metric_class(name)(**params)


def _load_builtin() -> None:
    # Importing a module registers its metrics; heavy dependencies load only in `setup`.
    for module in dict.fromkeys(BUILTIN.values()):
        importlib.import_module(module)


BUILTIN: dict[str, str] = {"length": "metrics.length", "clip": "metrics.clip", "embed-image": "metrics.embed",
                           "embed-text": "metrics.embed", "reward": "metrics.reward", "judge": "metrics.judge"}
