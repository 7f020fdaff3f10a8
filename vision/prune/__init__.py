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
from selector.core.registry import Registry

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
# The pruning methods: name -> ranker class, imported on first lookup. A new ranker is one file plus one line here.
RANKERS = Registry("pruning method", normalize=lambda name: name.lower().replace("-", "").replace("_", ""),
                   aliases={"kcentergreedy": "kcenter", "losscurvature": "curvature"})
RANKERS.add("forgetting", "vision.prune.forgetting:ForgettingRanker")
RANKERS.add("el2n", "vision.prune.el2n:EL2NRanker")
RANKERS.add("grand", "vision.prune.grand:GraNdRanker")
RANKERS.add("curvature", "vision.prune.curvature:CurvatureRanker")
RANKERS.add("herding", "vision.prune.coreset:HerdingRanker")
RANKERS.add("kcenter", "vision.prune.coreset:KCenterRanker")
RANKERS.add("random", "vision.prune.uniform:RandomImageRanker")

__all__ = ["RANKERS", "build_ranker", "ranker_params", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ranker_params(name: str) -> set[str]:
    """The parameters `build_ranker(name, ...)` accepts: the ranker's own fields, plus ProxyConfig's if it trains
    a proxy model."""
    own = {f.name for f in fields(RANKERS.get(name))}
    return own - {"proxy"} | ({f.name for f in fields(__getattr__("ProxyConfig"))} if "proxy" in own else set())


def build_ranker(name: str, **params: Any):
    """A ranker by name ("forgetting", "el2n", "grand", "curvature", "herding", "kcenter", "random").

    `params` may hold the ranker's fields and ProxyConfig fields side by side (or `proxy=ProxyConfig(...)`).
    Unknown names (`selector.core.registry.UnknownName`) or parameters raise MmselectError listing what is
    accepted.
    """
    key = RANKERS.key(name)
    cls = RANKERS.get(key)
    ProxyConfig = __getattr__("ProxyConfig")  # noqa: N806 (a class, loaded on first use)
    own = {f.name for f in fields(cls)}
    proxy_fields = {f.name for f in fields(ProxyConfig)}
    proxy_params = {k: params.pop(k) for k in list(params) if k in proxy_fields and k not in own}
    unknown = [k for k in params if k not in own]
    if unknown:
        raise MmselectError(f"{key} does not take {unknown}; it accepts {sorted(ranker_params(key))}")
    if proxy_params:
        if "proxy" not in own:
            raise MmselectError(f"{key} trains no proxy model; drop {sorted(proxy_params)}")
        base = params.pop("proxy", ProxyConfig())
        params["proxy"] = ProxyConfig(**{**{f.name: getattr(base, f.name) for f in fields(ProxyConfig)},
                                         **proxy_params})
    return cls(**params)
