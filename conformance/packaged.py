"""The suite as released: the vector files installed with the package.

`python -m conformance run [pytest options]` runs them through pytest with
no checkout: the installed `conformance_suites` directory is the suite root
and the rootdir, and pytest's cache goes to the user's cache directory
rather than into site-packages.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CACHE_ENV = "KVM_CONFORMANCE_CACHE"


def suites_dir() -> Path:
    """Where the installed suite is (the checkout's suites/ in an editable install)."""
    spec = importlib.util.find_spec("conformance_suites")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package conformance_suites is not installed (pip install kvm-mmu-conformance)")
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    base = os.environ.get(CACHE_ENV) or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    sub = "pytest" if os.environ.get(CACHE_ENV) else "kvm-mmu-conformance/pytest"
    return Path(base) / sub


def pytest_args(extra: Sequence[str]) -> list[str]:
    """pytest's arguments for the installed suite, then the caller's."""
    root = suites_dir()
    return [
        str(root),
        "--rootdir",
        str(root),
        "-c",
        os.devnull,
        "-o",
        f"conformance_suites={root}",
        "-o",
        f"cache_dir={cache_dir()}",
        *extra,
    ]


def run(extra: Sequence[str]) -> int:
    """pytest in a fresh interpreter: this one has imported the plugin already,
    and pytest wants to import (and assert-rewrite) it itself."""
    return subprocess.call([sys.executable, "-m", "pytest", *pytest_args(extra)])
