"""Selecting vectors by why they exist: `--flag NAME` and `--bug-class CLASS`
keep the vector items that carry that flag or a flag of that class (any of
those named), and every vector item gets a marker per flag (`flag_<name>`)
and per bug class (`bug_class_<class>`), `-` and `.` spelt `_`, for `-m`."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, Protocol

import pytest

from . import flagreg, schema
from .errors import LoadError
from .model import Flag
from .reading import read_document


class Flagged(Protocol):
    """A vector, or what collection knows of one (cache.VectorHead)."""

    @property
    def flags(self) -> tuple[Flag, ...]: ...


def marker_name(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def registries(suites: Iterable[Path]) -> list[Path]:
    """The flag registries of these suite directories: the nearest at or above each, and any below."""
    found: list[Path] = []
    for suite in (s for s in suites if s.is_dir()):
        nearest = flagreg.find_registry(suite / "any.toml")
        for path in ([Path(nearest)] if nearest else []) + sorted(suite.rglob(flagreg.REGISTRY_NAME)):
            if path.resolve() not in found:
                found.append(path.resolve())
    return found


def known_flags(suites: Iterable[Path], local: bool = False) -> dict[str, str]:
    """Flag name -> bug class, from the registries; with `local`, also from
    the files' own [suite.flags] (a scan of every file, done only when needed)."""
    suites = list(suites)
    flags: dict[str, str] = {}
    for path in registries(suites):
        flags.update({name: flag.bug_class for name, flag in flagreg.registry(str(path)).items()})
    for path in (f for s in suites if local and s.is_dir() for f in sorted(s.rglob("*.toml"))):
        if path.name != flagreg.REGISTRY_NAME:
            try:
                suite = read_document(path).data.get("suite", {})
            except LoadError:
                continue  # collection reports the file
            own = suite.get("flags", {}) if isinstance(suite, dict) else {}
            flags.update({n: str(v.get("bug_class", "")) for n, v in own.items() if isinstance(v, dict)})
    return flags


def check(flags: Collection[str], classes: Collection[str], suites: Iterable[Path]) -> dict[str, str]:
    """The known flags; ValueError names an unknown flag or class with the known ones."""
    suites = list(suites)
    for bug_class in classes:
        if bug_class not in schema.BUG_CLASSES:
            raise ValueError(f"--bug-class {bug_class!r}: unknown bug class; known: {', '.join(schema.BUG_CLASSES)}")
    try:
        known = known_flags(suites)
        if set(flags) - set(known):
            known = known_flags(suites, local=True)
    except LoadError as err:
        if not flags:
            return {}  # nothing to check: collection reports the broken registry where it is used
        raise ValueError(f"the flag registry cannot be read: {err}") from None
    for flag in flags:
        if flag not in known:
            raise ValueError(f"--flag {flag!r}: unknown flag; known: {', '.join(sorted(known)) or 'none'}")
    return known


class FlagSelection:
    """Adds the markers, then deselects by --flag / --bug-class; runs before
    pytest's own -k and -m, so that those see the markers."""

    def __init__(
        self,
        config: pytest.Config,
        flags: frozenset[str],
        classes: frozenset[str],
        known: dict[str, str],
        vector_of: Callable[[pytest.Item], Flagged | None],
    ) -> None:
        self.config, self.flags, self.classes, self.vector_of = config, flags, classes, vector_of
        self.marks: dict[tuple[str, str], Any] = {}  # (prefix, name) -> its MarkDecorator, made once
        for name, bug_class in sorted(known.items()):
            self.mark("flag", name)
            self.mark("bug_class", bug_class)

    def mark(self, prefix: str, name: str) -> Any:
        if (prefix, name) not in self.marks:
            key = marker_name(prefix, name)
            doc = f"vectors flagged {name}" if prefix == "flag" else f"vectors with a flag of bug class {name}"
            self.config.addinivalue_line("markers", f"{key}: {doc}")  # registered: --strict-markers accepts it
            self.marks[(prefix, name)] = getattr(pytest.mark, key)
        return self.marks[(prefix, name)]

    def wanted(self, vector: Flagged) -> bool:
        return any(f.name in self.flags or f.bug_class in self.classes for f in vector.flags)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            vector = self.vector_of(item)
            if vector is not None:
                names = [("flag", f.name) for f in vector.flags] + [("bug_class", f.bug_class) for f in vector.flags]
                for prefix, name in dict.fromkeys(names):
                    item.add_marker(self.mark(prefix, name))
            selecting = bool(self.flags or self.classes)
            (dropped if selecting and vector is not None and not self.wanted(vector) else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
