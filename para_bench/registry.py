"""Name -> factory registries for agents and suites.

Two ways in, one lookup:

* in-process: ``@register_agent("name")`` on a class or factory function;
* installed packages: the entry-point group ``para_bench.agents`` (and ``para_bench.suites``),
  ``name = "package.module:factory"``. Entry points are read lazily, by name, so
  ``import para_bench`` imports no agent code. para-bench's own agents use the same group.

``package.module:factory`` is accepted anywhere a name is. A name claimed by two different
sources is an error naming both.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any


class RegistryError(ValueError):
    """Unknown or ambiguous name; the message names the valid choices."""


@dataclass
class Entry:
    name: str
    source: str  # "built-in", or the distribution that provides the entry point
    target: str  # "module:attr"
    description: str = ""
    factory: Callable[..., Any] | None = None

    def load(self) -> Callable[..., Any]:
        if self.factory is None:
            self.factory = load_target(self.target)
        return self.factory


def load_target(target: str) -> Callable[..., Any]:
    """Imports ``package.module:attr``; raises ``RegistryError`` with the reason."""
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise RegistryError(f"cannot load {target!r}: {e}") from e
    return obj


class Registry:
    """A registry of one kind (agents or suites)."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind, self.group = kind, group
        self._entries: dict[str, Entry] = {}
        self._scanned = False

    def register(self, name: str, description: str = "") -> Callable:
        """Decorator registering a class or factory under ``name``."""

        def deco(obj: Callable) -> Callable:
            target = f"{obj.__module__}:{obj.__qualname__}"
            existing = self._entries.get(name)
            if existing and existing.target != target:
                raise RegistryError(
                    f"{self.kind} {name!r} is registered twice: by {existing.target} "
                    f"({existing.source}) and by {target}"
                )
            source = existing.source if existing else "in-process"
            desc = description or (existing.description if existing else "")
            self._entries[name] = Entry(name, source, target, desc, obj)
            obj.registry_name = name
            return obj

        return deco

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            source = "built-in" if dist == "para-bench" else dist
            existing = self._entries.get(ep.name)
            if existing and existing.target != ep.value:
                raise RegistryError(
                    f"{self.kind} {ep.name!r} is provided twice: by {existing.target} "
                    f"({existing.source}) and by {ep.value} ({source})"
                )
            if existing is None:
                self._entries[ep.name] = Entry(ep.name, source, ep.value)
            elif existing.source == "in-process":  # imported before the scan: same target
                existing.source = source

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._scan_entry_points()
        return [self._entries[n] for n in sorted(self._entries)]

    def get(self, name: str) -> Entry:
        """The entry for a name or ``module:attr``; raises ``RegistryError`` listing choices."""
        self._scan_entry_points()
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return Entry(name, "path", name)
        raise RegistryError(
            f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())} "
            f"(or give package.module:factory)"
        )

    def describe(self, entry: Entry) -> str:
        if entry.description:
            return entry.description
        try:
            doc = (entry.load().__doc__ or "").strip().splitlines()
        except RegistryError as e:
            return f"(cannot load: {e})"
        return doc[0] if doc else ""


AGENTS = Registry("agent", "para_bench.agents")
SUITES = Registry("suite", "para_bench.suites")


def register_agent(name: str, description: str = "") -> Callable:
    """Registers an agent class or factory under ``name`` (in-process)."""
    return AGENTS.register(name, description)


def register_suite(name: str, description: str = "") -> Callable:
    """Registers a suite factory (returning a ``SuiteSpec``) under ``name``."""
    return SUITES.register(name, description)


def make_agent(name: str, **kwargs: Any) -> Any:
    """Creates an agent by registry name or ``module:factory``; kwargs go to the factory."""
    entry = AGENTS.get(name)
    agent = entry.load()(**kwargs)
    if not getattr(agent, "name", None):
        try:
            agent.name = name
        except AttributeError:
            pass
    return agent
