"""Discover backends through the entry-point group, isolating broken plugins."""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

import pluggy

from . import hookspecs
from .contract import Backend, BackendInfo


@dataclass(frozen=True)
class PluginError:
    """A plugin that failed to load or to produce a backend."""

    source: str
    message: str


class Registry:
    """The plugin manager plus the backends it produced, by name."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.backends: dict[str, Backend] = {}
        self.mutants: dict[str, Backend] = {}
        self.errors: list[PluginError] = []

    def load_entry_points(self, group: str = hookspecs.ENTRY_POINT_GROUP) -> None:
        for ep in importlib.metadata.entry_points(group=group):
            if self.pm.get_plugin(ep.name) is not None:
                continue  # the same distribution seen twice on sys.path
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a vendor's import error must not end the session
                self.errors.append(PluginError(f"entry point {ep.name} = {ep.value}", f"{type(exc).__name__}: {exc}"))

    def register(self, plugin: object, name: str) -> None:
        self.pm.register(plugin, name=name)

    def collect_backends(self) -> None:
        """Ask each plugin for its backend, one at a time so one failure stays local."""
        for impl in self.pm.hook.conformance_backend.get_hookimpls():
            try:
                backend = impl.function()
            except Exception as exc:
                self.errors.append(PluginError(f"plugin {impl.plugin_name}", f"{type(exc).__name__}: {exc}"))
                continue
            if backend is None:
                continue
            if not isinstance(getattr(backend, "info", None), BackendInfo) or not callable(getattr(backend, "run", None)):
                self.errors.append(PluginError(f"plugin {impl.plugin_name}", "returned an object without info: BackendInfo and run()"))
                continue
            name = backend.info.name
            if name in self.backends:
                self.errors.append(PluginError(f"plugin {impl.plugin_name}", f"backend name {name!r} already registered"))
                continue
            self.backends[name] = backend


    def collect_mutants(self) -> None:
        """Ask each plugin for its mutants (kill-matrix only); errors stay local."""
        for impl in self.pm.hook.conformance_mutants.get_hookimpls():
            try:
                mutants = list(impl.function())
            except Exception as exc:
                self.errors.append(PluginError(f"plugin {impl.plugin_name}", f"{type(exc).__name__}: {exc}"))
                continue
            for mutant in mutants:
                self.mutants.setdefault(mutant.info.name, mutant)


def discover() -> Registry:
    registry = Registry()
    registry.load_entry_points()
    registry.collect_backends()
    return registry
