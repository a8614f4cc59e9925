"""A content-addressed cache of loaded suite files.

Parsing and validating TOML is most of what the runner costs per item, and
under xdist every worker collects everything. An entry is keyed on all that
determines a load's result: the loader's own source, the Python version,
the file's path and bytes, and the flag registry it resolves against. A
file that fails to load is never cached, so its error shows every time.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
import pickle
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import axes, build, capabilities, errors, flagreg, lines, load, model, reading, rules, schema, tables

# Every module whose code decides what a load returns.
LOADER_MODULES = (model, capabilities, errors, lines, reading, schema, axes, rules, flagreg, build, tables, load)


@functools.lru_cache(maxsize=1)
def loader_fingerprint() -> bytes:
    digest = hashlib.sha256(sys.version.encode())
    for module in LOADER_MODULES:
        digest.update(Path(module.__file__ or "").read_bytes())
    digest.update(Path(__file__).read_bytes())  # the shape of what is cached here (heads)
    return digest.digest()


def entry_key(path: Path) -> str:
    digest = hashlib.sha256(loader_fingerprint())
    digest.update(os.fsencode(str(path)) + b"\0" + path.read_bytes())
    registry = flagreg.find_registry(str(path))
    if registry:
        digest.update(b"\0" + Path(registry).read_bytes())
    return digest.hexdigest()


def load_cached(path: Path, directory: Path | None) -> load.SuiteFile:
    """load.load_file(path), served from DIRECTORY when nothing it depends on changed."""
    entry = _entry(path, directory)
    if entry is None:
        return load.load_file(path)
    cached = _read(entry)
    if isinstance(cached, load.SuiteFile):
        return cached
    suite = load.load_file(path)
    store(entry, suite)
    return suite


def _read_or_load(path: Path, entry: Path | None) -> load.SuiteFile:
    """The file's load from its cache entry if that holds one, else from the file (nothing written)."""
    cached = _read(entry) if entry is not None else None
    return cached if isinstance(cached, load.SuiteFile) else load.load_file(path)


@dataclass(frozen=True)
class VectorHead:
    """What collecting a vector's items needs of it: the rest (state and
    steps, most of a file's bytes) is read when the first of its file's
    items runs, so that a process reads only the files it runs (an xdist
    worker, about half of them) and `--collect-only` reads none."""

    id: str
    description: str
    profiles: frozenset[model.Profile]
    requires: frozenset[str]  # so that an item its backend cannot run is skipped without reading the vector
    flags: tuple[model.Flag, ...]
    path: str
    line: int

    @classmethod
    def of(cls, vector: model.Vector) -> VectorHead:
        return cls(
            vector.id, vector.description, vector.profiles, vector.requires, vector.flags, vector.path, vector.line
        )


@dataclass(frozen=True)
class Heads:
    heads: tuple[VectorHead, ...]
    errors: tuple[load.VectorError, ...]


class LazySuite:
    """A suite file's heads and load errors now, its vectors when first asked for."""

    def __init__(self, path: Path, entry: Path | None, heads: Heads, suite: load.SuiteFile | None = None) -> None:
        self.path, self.entry, self.heads = path, entry, heads
        self._vectors = None if suite is None else {v.id: v for v in suite.vectors}

    def vector(self, ident: str) -> model.Vector:
        if self._vectors is None:
            with gc_paused():
                self._vectors = {v.id: v for v in _read_or_load(self.path, self.entry).vectors}
                # They live as long as the session: out of the GC's generations, as
                # collected vectors are, so no later collection walks them again.
                gc.freeze()
        try:
            return self._vectors[ident]
        except KeyError:
            raise load.LoadError(
                str(self.path), 0, "vector", f"vector {ident!r} is no longer in the file: it changed after collection"
            ) from None


class Writes:
    """Cache entries to write, all at once, when collection is over.

    Writing them is a third of a cold collection, and nothing in this run
    reads them: where the process has one thread and can fork, a child
    writes them while the items run (on another CPU, if there is one) and
    the run waits for it only at its end. Elsewhere they are written then
    and there, in this process."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, load.SuiteFile | Heads]] = []
        self.child: int | None = None

    def add(self, entry: Path, value: load.SuiteFile | Heads) -> None:
        self.pending.append((entry, value))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        if hasattr(os, "fork") and threading.active_count() == 1 and self.child is None:
            pid = os.fork()
            if pid == 0:  # the child: write, and leave without running any of the parent's exit handlers
                status = 1
                try:
                    for entry, value in pending:
                        store(entry, value)
                    status = 0
                finally:
                    os._exit(status)
            self.child = pid
            return
        for entry, value in pending:
            store(entry, value)

    def wait(self) -> None:
        """Until the writing child, if any, is done (it never fails the run: a lost entry only costs speed)."""
        if self.child is not None:
            try:
                os.waitpid(self.child, 0)
            except ChildProcessError:
                pass
            self.child = None


def load_lazily(path: Path, directory: Path | None, writes: Writes | None = None) -> LazySuite:
    """PATH's heads, from DIRECTORY when cached there (its vectors on demand); else the whole file, loaded now.

    New entries go to WRITES if given (written when it is flushed), else straight to DIRECTORY.
    """
    entry = _entry(path, directory)
    heads_entry = entry.with_suffix(".heads") if entry is not None else None
    cached = _read(heads_entry) if heads_entry is not None else None
    if isinstance(cached, Heads):
        return LazySuite(path, entry, cached)
    suite = _read_or_load(path, entry)
    heads = Heads(tuple(VectorHead.of(v) for v in suite.vectors), suite.errors)
    if entry is not None and heads_entry is not None:
        entries: tuple[tuple[Path, load.SuiteFile | Heads], ...] = ((entry, suite), (heads_entry, heads))
        for where, value in entries:
            if writes is not None:
                writes.add(where, value)
            else:
                store(where, value)
    return LazySuite(path, entry, heads, suite)


def _entry(path: Path, directory: Path | None) -> Path | None:
    try:
        return directory / f"{entry_key(path)}.pickle" if directory is not None else None
    except OSError:
        return None  # unreadable input: let the loader report it


@contextmanager
def gc_paused() -> Iterator[None]:
    """Unpickling builds many objects at once; the cyclic GC, walking the
    growing heap while it does, would cost ten times the unpickling itself."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read(entry: Path) -> object:
    """A cache entry's object, or None when absent, unreadable or from an older model."""
    try:
        with gc_paused():
            return pickle.loads(entry.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
        return None


def store(entry: Path, suite: load.SuiteFile | Heads) -> None:
    """Write atomically: xdist workers may store the same entry at once."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            pickle.dump(suite, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, entry)
    except OSError:
        pass  # a read-only cache only costs speed
