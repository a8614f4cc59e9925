"""Isolated, edited copies of the reference backend's package.

Each mutant gets its own module objects under conformance_mutants.variants.<tag>,
compiled from the reference's source with one textual edit, so mutants and the
real reference can live in one process without touching each other.
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import conformance_reference

MODULES = ("mmu", "calls", "mainline", "tdx_v10", "plugin")  # dependency order


class StaleMutant(Exception):
    """The reference changed: an edit no longer matches exactly once."""


@dataclass(frozen=True)
class Edit:
    module: str  # one of MODULES
    old: str  # must occur exactly once in the module's source
    new: str


def load_variant(tag: str, edits: tuple[Edit, ...]) -> types.ModuleType:
    """The `plugin` module of a reference copy with `edits` applied."""
    base = Path(conformance_reference.__file__).resolve().parent
    package = f"{__name__}.{tag}"
    root = types.ModuleType(package)
    root.__path__ = []  # a package, but nothing is imported from disk
    root.__package__ = package
    root.__version__ = conformance_reference.__version__  # type: ignore[attr-defined]
    sys.modules[package] = root
    for name in MODULES:
        path = base / f"{name}.py"
        source = path.read_text(encoding="utf-8")
        for edit in (e for e in edits if e.module == name):
            if source.count(edit.old) != 1:
                raise StaleMutant(f"{tag}: edit of {name}.py matches {source.count(edit.old)} times: {edit.old!r}")
            source = source.replace(edit.old, edit.new)
        module = types.ModuleType(f"{package}.{name}")
        module.__package__, module.__file__ = package, str(path)
        sys.modules[module.__name__] = module
        exec(compile(source, f"{path} [mutant {tag}]", "exec"), module.__dict__)
        setattr(root, name, module)
    unknown = {e.module for e in edits} - set(MODULES)
    if unknown:
        raise StaleMutant(f"{tag}: no module {', '.join(sorted(unknown))} in the reference")
    return root.plugin  # type: ignore[attr-defined]
