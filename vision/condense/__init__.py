"""Dataset condensation: learn a few synthetic images per class (DC, DSA, DM, IDM, CAFE).

`build_condenser(name, **settings).condense(data) -> Reduction`. Imports are lazy so that the CLI can list this
package without loading torch.
"""
from __future__ import annotations

import importlib

__all__ = ["CONDENSERS", "build_condenser", "condenser_class"]

# name -> "module:Class"
CONDENSERS: dict[str, str] = {
    "dc": "vision.condense.dc:DC",
    "dsa": "vision.condense.dc:DSACondenser",
    "dm": "vision.condense.dm:DM",
    "idm": "vision.condense.idm:IDM",
    "cafe": "vision.condense.cafe:CAFE",
}


def condenser_class(name: str):
    key = name.lower()
    if key not in CONDENSERS:
        from vision.condense.base import CondenseError

        raise CondenseError(f"unknown condensation method {name!r}; choose one of {', '.join(CONDENSERS)}")
    module, cls = CONDENSERS[key].split(":")
    return getattr(importlib.import_module(module), cls)


def build_condenser(name: str, **settings):
    """A condenser with its method's defaults, overridden by `settings` (fields of its Config dataclass)."""
    cls = condenser_class(name)
    fields = set(cls.Config.__dataclass_fields__)
    unknown = sorted(set(settings) - fields)
    if unknown:
        from vision.condense.base import CondenseError

        raise CondenseError(f"{name} has no setting(s) {unknown}; known: {', '.join(sorted(fields))}")
    return cls(cls.Config(**settings))
