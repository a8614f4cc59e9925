"""A content-addressed cache of loaded suite files.

Parsing and validating TOML is most of what the runner costs per item, and
under xdist every worker collects everything. An entry is keyed on all that
determines a load's result: the loader's own source, the Python version,
the file's path and bytes, and the flag registry it resolves against. A
file that fails to load is never cached, so its error shows every time.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

from . import axes, build, capabilities, errors, flagreg, lines, load, model, reading, rules, schema, tables

# Every module whose code decides what a load returns.
LOADER_MODULES = (model, capabilities, errors, lines, reading, schema, axes, rules, flagreg, build, tables, load)


@functools.lru_cache(maxsize=1)
def loader_fingerprint() -> bytes:
    digest = hashlib.sha256(sys.version.encode())
    for module in LOADER_MODULES:
        digest.update(Path(module.__file__ or "").read_bytes())
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
    try:
        entry = directory / f"{entry_key(path)}.pickle" if directory is not None else None
    except OSError:
        entry = None  # unreadable input: let the loader report it
    if entry is None:
        return load.load_file(path)
    try:
        cached: load.SuiteFile = pickle.loads(entry.read_bytes())
        return cached
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
        pass  # absent, unreadable or from an older model: load afresh
    suite = load.load_file(path)
    store(entry, suite)
    return suite


def store(entry: Path, suite: load.SuiteFile) -> None:
    """Write atomically: xdist workers may store the same entry at once."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            pickle.dump(suite, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, entry)
    except OSError:
        pass  # a read-only cache only costs speed
