"""One registry helper for everything chosen by name: metrics, pruning rankers, condensers, networks, CLI subcommands.

An entry is either the object itself or a lazy reference, "package.module:attribute" (or "package.module" for a
module), imported on first lookup, so
listing the names (`names()`, what the CLI's `choices` and help read) imports nothing: `mmselect --help` and a
length-only `mmselect select` load no torch.

    RANKERS = Registry("pruning method")
    RANKERS.add("el2n", "vision.prune.el2n:EL2NRanker")   # one line per implementation
    RANKERS.get("el2n")                                   # imports vision.prune.el2n, returns the class
    RANKERS.get("nope")                                   # UnknownName: unknown pruning method 'nope'; known: el2n

A lookup of a name that is not registered raises `UnknownName`, an `MmselectError` (the CLI prints it as one line,
exit code 2) that lists the known names.
"""
from __future__ import annotations

import importlib
import types
from typing import Any, Callable, Generic, Iterator, TypeVar

from selector.core.errors import MmselectError

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")


class UnknownName(MmselectError, LookupError):
    """A name that no registry entry answers to; the message lists the known names."""

    def __init__(self, kind: str, name: object, known: list[str]):
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(known) or '(none)'}")
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:  # LookupError/KeyError would quote the message
        return self.args[0]


class Registry(Generic[T]):
    """Names -> objects (or "module:attribute" references imported on first lookup), in registration order.

    `kind` names what is registered in error messages ("metric", "pruning method"). `normalize` maps a user's
    spelling to the registered key (e.g. lower-case, "-"/"_" dropped); `aliases` are extra spellings of a key.
    """

    def __init__(self, kind: str, *, normalize: Callable[[str], str] | None = None,
                 aliases: dict[str, str] | None = None):
        self.kind = kind
        self._normalize = normalize or (lambda name: name)
        self._aliases: dict[str, str] = dict(aliases or {})
        self._entries: dict[str, T | str] = {}

    # registering ----------------------------------------------------------------------------------------------------
    def add(self, name: str, target: T | str, *, replace: bool = False) -> None:
        """Register `target` (an object, or a lazy "module:attribute" / "module" string) under `name`."""
        if isinstance(target, str) and target.count(":") > 1:
            raise ValueError(f"{self.kind} {name!r}: a lazy entry is 'module:attribute' or 'module', got {target!r}")
        current = self._entries.get(name)
        if current is not None and not replace and not self._same(current, target):
            raise ValueError(f"{self.kind} {name!r} registered twice ({self.reference(name)} and {target!r})")
        if current is None or replace or not isinstance(target, str):  # an object replaces its own lazy reference
            self._entries[name] = target

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: `@REGISTRY.register("name")`."""
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj
        return deco

    @staticmethod
    def _same(a: object, b: object) -> bool:
        def ref(x: object) -> object:
            if isinstance(x, str) or getattr(x, "__module__", None) is None:
                return x
            return f"{x.__module__}:{getattr(x, '__name__', None)}"
        return a is b or ref(a) == ref(b)

    # looking up -----------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered names in registration order; imports nothing."""
        return list(self._entries)

    def key(self, name: str) -> str:
        """The registered key `name` stands for (after normalising and aliases); UnknownName if none."""
        if name in self._entries:
            return name
        key = self._normalize(str(name))
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise UnknownName(self.kind, name, self.names())
        return key

    def get(self, name: str) -> T:
        """The object registered under `name`, importing its module on first use."""
        key = self.key(name)
        target = self._entries[key]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = importlib.import_module(module)
            if attr:
                target = getattr(target, attr)
            self._entries[key] = target
        return target

    def reference(self, name: str) -> str:
        """Where `name` is implemented ("module:attribute"), without importing it."""
        target = self._entries[self.key(name)]
        if isinstance(target, str):
            return target
        if isinstance(target, types.ModuleType):
            return target.__name__
        return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"

    def items(self) -> Iterator[tuple[str, Any]]:
        """(name, object) pairs, importing every entry."""
        for name in self.names():
            yield name, self.get(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.key(name)
        except UnknownName:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
