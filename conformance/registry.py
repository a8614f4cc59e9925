"""Backends from the entry-point group: found by name without importing,
loaded only when selected, and every failure kept as an error (fail closed:
the runner and the CLI end non-zero when one is left)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import pluggy

from . import backend_options, hookspecs
from .contract import Backend, is_backend

# Distributions of this project: their backends are trusted to run in the
# runner's process; every other distribution's are isolated by default.
FIRST_PARTY = frozenset({"kvm-mmu-conformance", "kvm-mmu-conformance-rust"})


@dataclass(frozen=True)
class PluginError:
    """A plugin that failed to load or to produce a backend."""

    source: str
    message: str


@dataclass(frozen=True)
class Source:
    """An entry point of the group, not imported yet. Its name is the name of
    the backend it provides (a plugin may provide only mutants)."""

    name: str
    value: str
    dist: str

    @property
    def first_party(self) -> bool:
        return normalise(self.dist) in FIRST_PARTY

    def where(self) -> str:
        return f"entry point {self.name} = {self.value} (distribution {self.dist})"


def normalise(dist: str) -> str:
    return dist.lower().replace("_", "-").replace(".", "-")


def find_sources(group: str = hookspecs.ENTRY_POINT_GROUP) -> tuple[dict[str, Source], list[PluginError]]:
    """Every entry point of the group by name; two distributions that claim
    one name are an error naming both (neither is used)."""
    seen: dict[str, list[Source]] = {}
    for ep in importlib.metadata.entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        source = Source(ep.name, ep.value, dist)
        if source not in seen.setdefault(ep.name, []):  # one distribution seen twice on sys.path
            seen[ep.name].append(source)
    sources = {name: found[0] for name, found in seen.items() if len(found) == 1}
    errors = [
        PluginError(
            f"backend name {name!r}", "registered by more than one distribution: " + "; ".join(s.where() for s in found)
        )
        for name, found in seen.items()
        if len(found) > 1
    ]
    return sources, errors


def not_a_backend(returned: object, source: str) -> str:
    """Why an object a hook returned is not a backend (see contract.is_backend)."""
    return f"{source}: returned {type(returned).__name__}, not an object with info: BackendInfo and run()"


class Registry:
    """The plugin manager, the entry points found, the backends loaded by
    name, and every error on the way."""

    def __init__(self, group: str = hookspecs.ENTRY_POINT_GROUP) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.sources, self.errors = find_sources(group)
        self.backends: dict[str, Backend] = {}
        self.mutants: dict[str, Backend] = {}

    def fail(self, source: str, message: str) -> None:
        self.errors.append(PluginError(source, message))

    def load(self, names: Iterable[str], options: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Import and register these entry points (not the others), then ask
        each for its backend, in this process, with its --backend-option values."""
        for name in names:
            source = self.sources[name]
            if self.pm.get_plugin(name) is not None:
                continue
            try:
                module = importlib.metadata.EntryPoint(source.name, source.value, hookspecs.ENTRY_POINT_GROUP).load()
                self.pm.register(module, name=name)
            except (Exception, SystemExit) as exc:  # SystemExit at import must not end the session either
                self.fail(source.where(), f"cannot be loaded: {type(exc).__name__}: {exc}")
                continue
            self.collect_backend(name, (options or {}).get(name, {}))

    def collect_backend(self, plugin_name: str, options: Mapping[str, str] | None = None) -> None:
        plugin = self.pm.get_plugin(plugin_name)
        for impl in self.pm.hook.conformance_backend.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            where = self.sources[plugin_name].where() if plugin_name in self.sources else f"plugin {plugin_name}"
            try:
                backend = impl.function(*backend_options.hook_arguments(impl.argnames, options or {}))
            except (Exception, SystemExit) as exc:
                self.fail(where, f"conformance_backend() raised {type(exc).__name__}: {exc}")
                continue
            if backend is None:
                continue
            if not is_backend(backend):
                self.fail(where, not_a_backend(backend, f"{where}: conformance_backend()"))
                continue
            self.add(backend, where, plugin_name)

    def add(self, backend: Backend, where: str, expected: str) -> None:
        """Keep a backend under its name, which must be its entry point's:
        backends are selected by that name before anything is imported."""
        name = backend.info.name
        if name != expected:
            self.fail(where, f"provides backend {name!r}: an entry point must be named after its backend")
        elif name in self.backends:
            self.fail(where, f"backend name {name!r} already registered")
        else:
            self.backends[name] = backend

    def collect_mutants(self) -> None:
        """Ask each plugin for its mutants (kill-matrix only); errors stay local."""
        for impl in self.pm.hook.conformance_mutants.get_hookimpls():
            try:
                # the hookspec's promise, as for any backend object: pluggy types a hookimpl as returning object
                mutants = list(cast("Iterable[Backend]", impl.function()))
            except Exception as exc:
                self.fail(f"plugin {impl.plugin_name}", f"{type(exc).__name__}: {exc}")
                continue
            for mutant in mutants:
                self.mutants.setdefault(mutant.info.name, mutant)


def discover(names: Iterable[str] | None = None) -> Registry:
    """A registry with these entry points (default: all) loaded in-process."""
    registry = Registry()
    registry.load(sorted(registry.sources) if names is None else [n for n in names if n in registry.sources])
    return registry
