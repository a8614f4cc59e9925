"""Suite files -> vectors, one error per bad vector.

Data flows one way: reading.py (text, data, lines) -> schema.py (keys,
types, bounds) -> build.py and tables.py (model objects, rules.py) -> a
SuiteFile. A problem with the file itself (syntax, the [suite] header, the
flags) fails the whole file; a problem inside one [[vector]] or [[table]]
fails only that one, and the file's other vectors still load.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema
from .build import FileCtx, build_vector
from .errors import KeyPath, LoadError, RuleViolation, render
from .flagreg import REGISTRY_NAME, find_registry, flags_for, load_flags, suite_name
from .model import Vector
from .reading import Document, read_document, shown_path
from .tables import expand_table

__all__ = [
    "FORMAT",
    "LoadError",
    "Loaded",
    "SuiteFile",
    "SymlinkLoopWarning",
    "VectorError",
    "load_all",
    "load_file",
    "load_flags",
    "suite_files",
    "suite_name",
    "unique_ids",
]

FORMAT = schema.FORMAT


@dataclass(frozen=True)
class VectorError:
    """A [[vector]] or [[table]] that did not load; `id` is the vector id it
    would have had (or its key path, when its id is unreadable)."""

    id: str
    error: LoadError


@dataclass(frozen=True)
class SuiteFile:
    path: str
    description: str
    vectors: tuple[Vector, ...]
    errors: tuple[VectorError, ...] = ()

    def strict(self) -> SuiteFile:
        """The file, or its first error raised."""
        if self.errors:
            raise self.errors[0].error
        return self


def load_file(path: str | os.PathLike[str]) -> SuiteFile:
    """Load one suite file. A problem with the file raises LoadError; a bad
    vector or table is one entry of `errors`."""
    doc = read_document(path)
    if Path(doc.path).name == REGISTRY_NAME:
        raise LoadError(doc.path, 1, "<root>", f"{REGISTRY_NAME} is a flag registry, not a vector file")
    try:
        _check_format(doc.data)
        schema.check(doc.data, schema.SUITE_FILE, ())
    except RuleViolation as violation:
        raise doc.error(violation) from None
    file = FileCtx(doc.path, suite_name(doc.path, find_registry(doc.path)), flags_for(doc), doc.line)
    seen: dict[str, KeyPath] = {}
    vectors: list[tuple[int, Vector]] = []
    errors: list[tuple[int, VectorError]] = []
    for key in ("vector", "table"):
        for i, value in enumerate(doc.data.get(key, [])):
            at: KeyPath = (key, i)
            ident = _local_id(value)
            try:
                _claim(ident, at, seen, doc)
                built = [build_vector(value, at, file)] if key == "vector" else expand_table(value, at, file)
                vectors.extend((v.line, v) for v in built)
            except RuleViolation as violation:
                errors.append((doc.line(at), VectorError(f"{file.name}::{ident or render(at)}", doc.error(violation))))
    vectors.sort(key=lambda pair: pair[0])  # file order, vectors and table rows interleaved
    errors.sort(key=lambda pair: pair[0])
    return SuiteFile(
        doc.path, doc.data["suite"]["description"], tuple(v for _, v in vectors), tuple(e for _, e in errors)
    )


def _check_format(data: dict[str, Any]) -> None:
    """A file of another format version is named as such, before any key of it is judged."""
    suite = data.get("suite")
    version = suite.get("format") if isinstance(suite, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != FORMAT:
        schema.fail(("suite", "format"), f"unsupported format {version}; this loader reads format {FORMAT}")


def _local_id(value: Any) -> str:
    """The entry's id when it is a valid one (for naming its error)."""
    ident = value.get("id") if isinstance(value, dict) else None
    return ident if isinstance(ident, str) and schema._matches(schema.ID_PATTERN, ident) else ""


def _claim(ident: str, at: KeyPath, seen: dict[str, KeyPath], doc: Document) -> None:
    """Vector and table ids share one namespace per file."""
    if ident in seen:
        schema.fail(at + ("id",), f"duplicate id {ident!r} (first used at line {doc.line(seen[ident])})")
    if ident:
        seen[ident] = at


# ---------------------------------------------------------------- many files


class SymlinkLoopWarning(UserWarning):
    """A directory under a suite path links back to one of its ancestors."""


def suite_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The vector files under each path (a directory is searched, following
    symlinks but no loop), registries excluded, each real file once."""
    files: list[Path] = []
    seen: set[str] = set()
    for path in map(Path, paths):
        found = _walk(path) if path.is_dir() else [path]
        for file in found:
            real = os.path.realpath(file)
            if file.name != REGISTRY_NAME and real not in seen:
                seen.add(real)
                files.append(file)
    return files


def _walk(top: Path) -> list[Path]:
    """os.walk with symlinks followed, except into a directory that is one
    of the current directory's own ancestors (a loop), which is warned of."""
    found: list[Path] = []
    chains: dict[str, frozenset[str]] = {}  # directory -> the real paths of it and its ancestors
    for directory, subdirs, names in os.walk(top, followlinks=True):
        chain = chains.pop(directory, frozenset()) | {os.path.realpath(directory)}
        keep = []
        for sub in sorted(subdirs):
            full = os.path.join(directory, sub)
            if os.path.realpath(full) in chain:
                warnings.warn(
                    SymlinkLoopWarning(
                        f"{shown_path(full)}: a symlink loop (it leads back to "
                        f"{shown_path(os.path.realpath(full))}); not followed"
                    ),
                    stacklevel=2,
                )
                continue
            chains[full] = chain
            keep.append(sub)
        subdirs[:] = keep
        found += sorted(Path(directory) / n for n in names if n.endswith(".toml"))
    return found


def unique_ids(suites: Iterable[SuiteFile]) -> tuple[list[Vector], list[VectorError]]:
    """Vector ids are unique across files: the first of an id is kept, each
    later one is an error naming the first."""
    first: dict[str, Vector] = {}
    errors = []
    for suite in suites:
        for vector in suite.vectors:
            other = first.setdefault(vector.id, vector)
            if other is not vector:
                errors.append(
                    VectorError(
                        vector.id,
                        LoadError(
                            vector.path,
                            vector.line,
                            "id",
                            f"duplicate vector id {vector.id!r}: also at {other.path}:{other.line}",
                        ),
                    )
                )
    return list(first.values()), errors


@dataclass(frozen=True)
class Loaded:
    """Every vector of a set of paths, and every error, in file order."""

    vectors: tuple[Vector, ...]
    errors: tuple[LoadError, ...]
    files: int


def load_all(paths: Sequence[str | os.PathLike[str]]) -> Loaded:
    files = suite_files(paths)
    suites, errors = [], []
    for path in files:
        try:
            suite = load_file(path)
        except LoadError as err:
            errors.append(err)
            continue
        suites.append(suite)
        errors += [e.error for e in suite.errors]
    vectors, duplicates = unique_ids(suites)
    return Loaded(tuple(vectors), tuple(errors) + tuple(e.error for e in duplicates), len(files))
