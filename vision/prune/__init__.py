"""Image pruning rankers: forgetting, EL2N, GraNd, loss curvature, herding, k-center greedy, random.

Each is a Ranker (`rank(data: ImageData) -> selector.core.ranking.Ranking`, higher score = keep) and goes through the
shared `select`:

    from selector.core.ranking import select
    from vision.prune import build_ranker
    ranking = build_ranker("el2n", epoch=10, runs=5, epochs=40, width=64).rank(train_data)
    kept = train_data.subset(select(ranking, 0.5).indices)

`build_ranker(name, **params)` takes the ranker's own fields plus any `ProxyConfig` field (net, width, depth, epochs,
lr, batch_size, device, progress) flat, so CLIs and the condensation initialisers can build any ranker by name.
"""
from __future__ import annotations

import importlib
from dataclasses import fields
from typing import Any

from selector.core.errors import MmselectError

# Public names -> defining module. Loaded on first use (PEP 562), so that listing this package (the CLI builds every
# subcommand's parser) does not import torch, which takes seconds.
_EXPORTS: dict[str, str] = {
    "ProxyConfig": "vision.prune.base",
    "HerdingRanker": "vision.prune.coreset", "KCenterRanker": "vision.prune.coreset",
    "extract_features": "vision.prune.coreset",
    "CurvatureRanker": "vision.prune.curvature", "curvature_scores": "vision.prune.curvature",
    "EL2NRanker": "vision.prune.el2n", "el2n_scores": "vision.prune.el2n",
    "ForgettingRanker": "vision.prune.forgetting", "ForgettingTracker": "vision.prune.forgetting",
    "GraNdRanker": "vision.prune.grand", "grand_scores": "vision.prune.grand",
    "herding_order": "vision.prune.greedy", "kcenter_order": "vision.prune.greedy",
    "RandomImageRanker": "vision.prune.uniform",
}
_RANKER_NAMES: dict[str, str] = {
    "forgetting": "ForgettingRanker", "el2n": "EL2NRanker", "grand": "GraNdRanker", "curvature": "CurvatureRanker",
    "herding": "HerdingRanker", "kcenter": "KCenterRanker", "random": "RandomImageRanker",
}

__all__ = ["RANKERS", "build_ranker", *_EXPORTS]


def __getattr__(name: str):
    if name == "RANKERS":  # method name -> ranker class
        return {key: __getattr__(cls) for key, cls in _RANKER_NAMES.items()}
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_ranker(name: str, **params: Any):
    """A ranker by name ("forgetting", "el2n", "grand", "curvature", "herding", "kcenter", "random").

    `params` may hold the ranker's fields and ProxyConfig fields side by side (or `proxy=ProxyConfig(...)`).
    Unknown names or parameters raise MmselectError listing what is accepted.
    """
    key = name.lower().replace("-", "").replace("_", "")
    key = {"kcentergreedy": "kcenter", "k-center": "kcenter", "losscurvature": "curvature"}.get(key, key)
    if key not in _RANKER_NAMES:
        raise MmselectError(f"unknown pruning method {name!r}; use one of {', '.join(_RANKER_NAMES)}")
    cls = __getattr__(_RANKER_NAMES[key])
    ProxyConfig = __getattr__("ProxyConfig")  # noqa: N806 (a class, loaded on first use)
    own = {f.name for f in fields(cls)}
    proxy_fields = {f.name for f in fields(ProxyConfig)}
    proxy_params = {k: params.pop(k) for k in list(params) if k in proxy_fields and k not in own}
    unknown = [k for k in params if k not in own]
    if unknown:
        accepted = sorted(own - {"proxy"} | (proxy_fields if "proxy" in own else set()))
        raise MmselectError(f"{key} does not take {unknown}; it accepts {accepted}")
    if proxy_params:
        if "proxy" not in own:
            raise MmselectError(f"{key} trains no proxy model; drop {sorted(proxy_params)}")
        base = params.pop("proxy", ProxyConfig())
        params["proxy"] = ProxyConfig(**{**{f.name: getattr(base, f.name) for f in fields(ProxyConfig)},
                                         **proxy_params})
    return cls(**params)
