"""Dataset condensation: learn a few synthetic images per class (DC, DSA, DM, IDM, CAFE).

`build_condenser(name, **settings).condense(data) -> Reduction`. `CONDENSERS` is the registry of methods (lazy
entries, so the CLI can list them without loading torch); a new condenser is one file with a `Condenser` subclass
plus one line below.
"""
from __future__ import annotations

from selector.core.registry import Registry

__all__ = ["CONDENSERS", "build_condenser", "condenser_class"]

CONDENSERS = Registry("condensation method", normalize=str.lower)
CONDENSERS.add("dc", "vision.condense.dc:DC")
CONDENSERS.add("dsa", "vision.condense.dc:DSACondenser")
CONDENSERS.add("dm", "vision.condense.dm:DM")
CONDENSERS.add("idm", "vision.condense.idm:IDM")
CONDENSERS.add("cafe", "vision.condense.cafe:CAFE")


def condenser_class(name: str):
    """The condenser class registered as `name`; `UnknownName` lists the known methods."""
    return CONDENSERS.get(name)


def build_condenser(name: str, **settings):
    """A condenser with its method's defaults, overridden by `settings` (fields of its Config dataclass)."""
    cls = condenser_class(name)
    fields = set(cls.Config.__dataclass_fields__)
    unknown = sorted(set(settings) - fields)
    if unknown:
        from vision.condense.base import CondenseError

        raise CondenseError(f"{name} has no setting(s) {unknown}; known: {', '.join(sorted(fields))}")
    return cls(cls.Config(**settings))
