"""The flag registry: `flags.toml` files and a suite file's own [suite.flags].

A suite file may use the flags of the nearest `flags.toml` at or above its
directory plus those it defines itself; the registry's directory is also
the suite root that vector ids are relative to.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from . import schema
from .errors import KeyPath, RuleViolation
from .model import Flag
from .reading import Document, read_document

REGISTRY_NAME = "flags.toml"


def parse_flags(value: Any, path: KeyPath) -> dict[str, Flag]:
    """[flags.<name>] / [suite.flags.<name>] entries, checked against the schema."""
    schema.check(value, schema.FLAGS, path)
    return {
        name: Flag(
            name=name,
            description=entry["description"],
            bug_class=entry["bug_class"],
            kernel=tuple(entry["kernel"]),
            links=tuple(entry.get("links", ())),
        )
        for name, entry in value.items()
    }


def find_registry(suite_path: str | os.PathLike[str]) -> str | None:
    """The nearest flags.toml at or above the suite file's directory."""
    start = Path(os.path.abspath(suite_path)).parent
    for directory in (start, *start.parents):
        candidate = directory / REGISTRY_NAME
        if candidate.is_file():
            return str(candidate) if os.path.isabs(suite_path) else os.path.relpath(candidate)
    return None


def suite_name(path: str, registry: str | None) -> str:
    """A file's path under its suite root (the directory of its flag
    registry, else its own), '/'-separated and without `.toml`."""
    root = Path(os.path.abspath(registry)).parent if registry else Path(os.path.abspath(path)).parent
    relative = Path(os.path.abspath(path)).relative_to(root)
    return relative.with_suffix("").as_posix()


def registry(path: str) -> dict[str, Flag]:
    """A registry is shared by every file under it: parsed once per version."""
    stat = os.stat(path)
    return dict(_registry_at(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _registry_at(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, Flag], ...]:
    del mtime_ns, size  # part of the cache key only
    doc = read_document(path)
    try:
        schema.check(doc.data, schema.REGISTRY, ())
        return tuple(parse_flags(doc.data.get("flags", {}), ("flags",)).items())
    except RuleViolation as violation:
        raise doc.error(violation) from None


def flags_for(doc: Document) -> dict[str, Flag]:
    """The flags one suite file may use; a LoadError names the file at fault."""
    registry_path = find_registry(doc.path)
    shared = registry(registry_path) if registry_path else {}
    suite = doc.data.get("suite")
    local_value = suite.get("flags", {}) if isinstance(suite, dict) else {}
    try:
        local = parse_flags(local_value, ("suite", "flags"))
        for name in local:
            if name in shared:
                schema.fail(("suite", "flags", name), f"flag {name!r} is already defined in {registry_path}")
    except RuleViolation as violation:
        raise doc.error(violation) from None
    return {**shared, **local}


def load_flags(suite_path: str | os.PathLike[str]) -> dict[str, Flag]:
    """The flags a suite file may use: the nearest flags.toml plus its own [suite.flags]."""
    return flags_for(read_document(suite_path))


def flag_refs(names: tuple[str, ...], flags: dict[str, Flag], path: KeyPath) -> tuple[Flag, ...]:
    """Checked flag names -> the flags they name."""
    for i, name in enumerate(names):
        if name not in flags:
            schema.fail(path + (i,), f"unknown flag {name!r}; define it in {REGISTRY_NAME} or [suite.flags]")
    if len(set(names)) != len(names):
        schema.fail(path, "lists a flag twice")
    return tuple(flags[name] for name in names)
