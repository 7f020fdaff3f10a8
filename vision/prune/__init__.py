"""Image pruning rankers: forgetting, EL2N, GraNd, loss curvature, herding, k-center greedy, random.

Each is a Ranker (`rank(data: ImageData) -> selector.ranking.Ranking`, higher score = keep) and goes through the
shared `select`:

    from selector.ranking import select
    from vision.prune import build_ranker
    ranking = build_ranker("el2n", epoch=10, runs=5, epochs=40, width=64).rank(train_data)
    kept = train_data.subset(select(ranking, 0.5).indices)

`build_ranker(name, **params)` takes the ranker's own fields plus any `ProxyConfig` field (net, width, depth, epochs,
lr, batch_size, device, progress) flat, so CLIs and the condensation initialisers can build any ranker by name.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from selector.errors import MmselectError
from vision.prune.base import ProxyConfig
from vision.prune.coreset import HerdingRanker, KCenterRanker, extract_features
from vision.prune.curvature import CurvatureRanker, curvature_scores
from vision.prune.el2n import EL2NRanker, el2n_scores
from vision.prune.forgetting import ForgettingRanker, ForgettingTracker
from vision.prune.grand import GraNdRanker, grand_scores
from vision.prune.greedy import herding_order, kcenter_order
from vision.prune.uniform import RandomImageRanker

__all__ = ["RANKERS", "build_ranker", "ProxyConfig", "ForgettingRanker", "ForgettingTracker", "EL2NRanker",
           "el2n_scores", "GraNdRanker", "grand_scores", "CurvatureRanker", "curvature_scores", "HerdingRanker",
           "KCenterRanker", "RandomImageRanker", "herding_order", "kcenter_order", "extract_features"]

RANKERS: dict[str, type] = {
    "forgetting": ForgettingRanker,
    "el2n": EL2NRanker,
    "grand": GraNdRanker,
    "curvature": CurvatureRanker,
    "herding": HerdingRanker,
    "kcenter": KCenterRanker,
    "random": RandomImageRanker,
}


def build_ranker(name: str, **params: Any):
    """A ranker by name ("forgetting", "el2n", "grand", "curvature", "herding", "kcenter", "random").

    `params` may hold the ranker's fields and ProxyConfig fields side by side (or `proxy=ProxyConfig(...)`).
    Unknown names or parameters raise MmselectError listing what is accepted.
    """
    key = name.lower().replace("-", "").replace("_", "")
    key = {"kcentergreedy": "kcenter", "k-center": "kcenter", "losscurvature": "curvature"}.get(key, key)
    if key not in RANKERS:
        raise MmselectError(f"unknown pruning method {name!r}; use one of {', '.join(RANKERS)}")
    cls = RANKERS[key]
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
