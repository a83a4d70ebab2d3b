"""A tiny generic name -> object registry.

Datasets, architectures, losses, optimizers and activations are each one `Registry`: adding one
is a single `register` call, and asking for an unknown name says which names exist.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar, overload

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries of one kind (`kind` names that kind in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name, entry=None):
        """Register `entry` under `name`; without `entry`, returns a decorator.

        Raises `ValueError` when the name is already taken (silently replacing an entry would
        make the outcome depend on import order).
        """
        if entry is None:
            return lambda e: self.register(name, e)
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered; "
                             f"registered: {', '.join(self.names())}")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry registered under `name`; `ValueError` listing the known names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown name, reused by spec validation."""
        return f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}"

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
