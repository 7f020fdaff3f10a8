"""One verb to shrink an image dataset: `reduce(data, budget, method=...)`.

A pruning method (random, herding, k-center, forgetting, ... from `vision.prune`) ranks the real images and `select`
keeps the best `budget` per class: the result is a `Selection` of real images. A condenser (dc, dsa, dm, idm, cafe
from `vision.condense`) learns `budget` synthetic images per class: the result is a `Reduction`, its sibling that
carries tensors where a Selection carries indices. `as_image_data(result, data)` turns either into the `ImageData`
a network trains on, so evaluation code does not care which way the dataset was shrunk.

    sel = reduce(train, 10, method="herding")            # Selection: 10 real images per class
    red = reduce(train, 10, method="dm", iterations=200)  # Reduction: 10 synthetic images per class
    evaluate_reduced(as_image_data(red, train), splits)   # see vision.evaluate
"""
from __future__ import annotations

from selector.core.ranking import Selection, select
from vision.condense import CONDENSERS, build_condenser
from vision.data import ImageData
from vision.reduction import ReduceError, Reduction, select_per_class

__all__ = ["reduce", "is_condenser"]


def is_condenser(method: str) -> bool:
    return method.lower() in CONDENSERS


def reduce(data: ImageData, budget: int | float, method: str = "random", *, unit: str = "ipc", seed: int = 0,
           stratified=None, **params) -> Selection | Reduction:
    """Shrink `data` to `budget` with `method` (a pruning ranker or a condenser).

    unit="ipc": `budget` images per class (pruning: the best `budget` of each class; condensing: `budget` learned
    images per class). unit="total" (pruning only): `budget` items overall, a count or a fraction, with the
    ranker's own groups: class quotas proportional to class sizes for class-balanced rankers (the default), one
    global cut for a ranker built with balancing off. `params` go to the ranker or the condenser's config.
    `stratified` (a `selector.core.stratified.Stratified`, pruning with unit="total" only) fills the cut by CCS
    coverage-centric sampling over the score range instead of by best score; a `vision.prune.cut_choice.CutChoice`
    chooses between that and the best scores on a held-out share of `data` (recorded in `Selection.info`).
    """
    key = method.lower()
    if unit not in ("ipc", "total"):
        raise ReduceError(f"unit must be 'ipc' or 'total', got {unit!r}")
    if stratified is not None and (is_condenser(key) or unit != "total"):
        raise ReduceError("stratified (CCS) selection applies to a pruning ranker with unit='total'")
    if is_condenser(key):
        if unit != "ipc" or isinstance(budget, float):
            raise ReduceError(f"{method} learns images per class: pass an integer budget with unit='ipc'")
        return build_condenser(key, ipc=int(budget), seed=seed, **params).condense(data)
    try:
        from vision.prune import build_ranker
    except ImportError as exc:  # the pruning package is another module's job; say so plainly
        raise ReduceError(f"pruning method {method!r} needs vision.prune ({exc})") from exc
    ranker = build_ranker(key, seed=seed, **params)
    ranking = ranker.rank(data)
    if unit == "ipc":
        if isinstance(budget, float):
            raise ReduceError("unit='ipc' needs an integer number of images per class")
        return select_per_class(ranking, data.labels, int(budget), seed=seed)
    from vision.prune.cut_choice import CutChoice, choose_cut

    if not isinstance(stratified, CutChoice):
        return select(ranking, budget, seed=seed, stratified=stratified)
    cut, report = choose_cut(data, ranking, budget, stratified, _proxy_of(ranker, params), seed)
    sel = select(ranking, budget, seed=seed, stratified=cut)
    sel.info["cut_choice"] = report
    return sel


def _proxy_of(ranker, params: dict):
    """The proxy network the ranker trains, or (a ranker without one) the one its flat settings describe."""
    from dataclasses import fields

    from vision.prune import ProxyConfig

    proxy = getattr(ranker, "proxy", None)
    if isinstance(proxy, ProxyConfig):
        return proxy
    return ProxyConfig(**{f.name: params[f.name] for f in fields(ProxyConfig) if f.name in params})
