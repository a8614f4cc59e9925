"""What a results file says about its run: suite, framework, backends, host, time, command."""

from __future__ import annotations

import datetime
import functools
import hashlib
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import __version__, schema
from .contract import BackendInfo
from .results import BackendRecord, Run


def now() -> str:
    """UTC, ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def suite_files(suites: Iterable[Path]) -> list[tuple[str, Path]]:
    """Every TOML file (vectors and flag registries) under the suite
    directories, named by the directory's position and the path within it:
    a checkout's suites/ and the installed copy hash alike."""
    found = []
    for index, root in enumerate(suites):
        if root.is_dir():
            found += [(f"{index}/{p.relative_to(root).as_posix()}", p) for p in root.rglob("*.toml") if p.is_file()]
    return sorted(found)


def suite_hash(files: Sequence[tuple[str, Path]]) -> str:
    """Names and bytes both count: a renamed file changes the vector ids."""
    digest = hashlib.sha256()
    for name, path in files:
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode("utf-8", "surrogateescape"))  # any file name
        digest.update(data)
    return f"sha256:{digest.hexdigest()}"


@functools.lru_cache(maxsize=4)
def identity(suites: tuple[Path, ...]) -> tuple[str, int]:
    """The suite's hash and file count, read once per process: the run's
    header names what the results file records, even if a file changes
    while the items run."""
    files = suite_files(suites)
    return suite_hash(files), len(files)


def backend_record(info: BackendInfo) -> BackendRecord:
    return BackendRecord(info.name, info.version, dict(info.details), dict(info.where), info.unavailable or "")


def this_run(
    suites: Iterable[Path],
    backends: Iterable[BackendInfo],
    started: str,
    args: Sequence[str],
    cwd: Path,
    exit_status: int | None,
) -> Run:
    digest, count = identity(tuple(suites))
    return Run(
        framework_version=__version__,
        suite_hash=digest,
        suite_files=count,
        suite_format=schema.FORMAT,
        backends=tuple(backend_record(b) for b in sorted(backends, key=lambda b: b.name)),
        host=platform.node(),
        kernel=platform.release(),
        started=started,
        finished=now(),
        argv=tuple(sys.argv),
        args=tuple(args),
        cwd=str(cwd),
        exit_status=exit_status,
    )
