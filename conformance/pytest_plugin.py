"""The runner: TOML file -> one item per (vector, profile, backend) -> verdict.

Loaded through the `pytest11` entry point. A bad vector file is one
collection error; a backend that raises or hangs fails its own item.
"""
from __future__ import annotations

import gc
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from .cache import load_cached
from .contract import Backend, KnownFailure
from .load import LoadError
from .model import Profile, Vector
from .registry import Registry, discover
from .report import MatrixReporter, Result
from .timeout import deadline
from .verdict import Verdict, judge

RESULT_KEY = "conformance"


@dataclass(frozen=True)
class Selection:
    registry: Registry
    backends: tuple[Backend, ...]
    profiles: tuple[Profile, ...]
    suites: tuple[Path, ...]
    timeout: float
    cache: Optional[Path]  # where loaded vector files are cached, if anywhere


SELECTION = pytest.StashKey[Selection]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "kvm-mmu-conformance")
    group.addoption("--backend", action="append", default=[], metavar="NAME",
                    help="run this backend (repeatable; default: every available backend)")
    group.addoption("--profile", action="append", default=[], choices=[p.value for p in Profile],
                    help="run this spec profile (repeatable; default: both)")
    group.addoption("--conformance-timeout", type=float, default=60.0, metavar="SECONDS",
                    help="fail a backend's item after this long (default 60)")
    group.addoption("--conformance-json", metavar="PATH", help="write every item's result as JSON")
    group.addoption("--conformance-no-cache", action="store_true",
                    help="parse every vector file afresh instead of using pytest's cache directory")
    parser.addini("conformance_suites", "directories whose *.toml files are vector suites",
                  type="linelist", default=["suites"])


def pytest_configure(config: pytest.Config) -> None:
    registry = discover()
    names = config.getoption("backend")
    unknown = sorted(set(names) - set(registry.backends))
    if unknown:
        raise pytest.UsageError(f"unknown backend(s) {', '.join(unknown)}; registered: "
                                f"{', '.join(sorted(registry.backends)) or 'none'}")
    chosen = [registry.backends[n] for n in sorted(set(names))] if names else [
        b for _, b in sorted(registry.backends.items()) if not b.info.unavailable]
    profiles = tuple(Profile(p) for p in config.getoption("profile")) or tuple(Profile)
    root = Path(str(config.rootpath))
    suites = tuple((root / s).resolve() for s in config.getini("conformance_suites"))
    cache = None
    if getattr(config, "cache", None) is not None and not config.getoption("conformance_no_cache"):
        cache = Path(config.cache.mkdir("conformance-vectors"))
    config.stash[SELECTION] = Selection(registry, tuple(chosen), tuple(sorted(set(profiles))),
                                        suites, config.getoption("conformance_timeout"), cache)
    if any(s.is_dir() for s in suites):
        # One bad vector file must not stop the others from running.
        config.option.continue_on_collection_errors = True
    config.pluginmanager.register(MatrixReporter(config, registry), "conformance-matrix")


def pytest_report_header(config: pytest.Config) -> list[str]:
    selection = config.stash[SELECTION]
    lines = ["conformance backends: " + (", ".join(
        f"{b.info.name} {b.info.version}" for b in selection.backends) or "none"),
        "conformance profiles: " + ", ".join(p.value for p in selection.profiles)]
    lines += [f"conformance backend {b.info.name} unavailable: {b.info.unavailable}"
              for b in selection.registry.backends.values() if b.info.unavailable]
    lines += [f"conformance plugin error: {e.source}: {e.message}" for e in selection.registry.errors]
    return lines


def pytest_collection_finish(session: pytest.Session) -> None:
    # Loaded vectors live until the session ends; moving them out of the
    # cyclic GC's generations spares every later collection (pytest runs
    # several at teardown) from walking them again (docs/benchmarks.md).
    if any(isinstance(item, VectorItem) for item in session.items):
        gc.freeze()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional["VectorFile"]:
    if file_path.suffix != ".toml" or file_path.name == "flags.toml":
        return None
    selection = parent.config.stash[SELECTION]
    if not any(file_path.resolve().is_relative_to(s) for s in selection.suites):
        return None
    return VectorFile.from_parent(parent, path=file_path)


class VectorFile(pytest.File):
    def collect(self) -> Iterator["VectorItem"]:
        selection = self.config.stash[SELECTION]
        try:
            suite = load_cached(self.path, selection.cache)
        except LoadError as err:
            raise self.CollectError(str(err)) from None
        for vector in suite.vectors:
            local = vector.id.split("::", 1)[-1].replace("::", "/")  # '::' separates node-id parts
            for profile in selection.profiles:
                if profile not in vector.profiles:
                    continue
                for backend in selection.backends:
                    if profile not in backend.info.profiles:
                        continue  # not a claim this backend makes: no item, rather than a skip per vector
                    yield VectorItem.from_parent(
                        self, name=f"{local}[{backend.info.name}:{profile.value}]",
                        vector=vector, profile=profile, backend=backend)


class VectorMismatch(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__("observation differs from the vector")
        self.verdict = verdict


class VectorItem(pytest.Item):
    def __init__(self, *, vector: Vector, profile: Profile, backend: Backend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vector, self.profile, self.backend = vector, profile, backend

    def record(self, outcome: str, detail: str = "", ignored: tuple[str, ...] = ()) -> None:
        self.user_properties.append((RESULT_KEY, Result(
            self.nodeid, self.vector.id, self.backend.info.name, self.profile.value,
            outcome, detail, ignored, dict(self.backend.info.where)).as_dict()))

    def runtest(self) -> None:
        info = self.backend.info
        unmet = info.unmet(self.vector.requires | {f"profile:{self.profile.value}"})
        if unmet:
            self.record("skipped", "; ".join(unmet))
            pytest.skip("unmet: " + "; ".join(unmet))
        try:
            with deadline(self.config.stash[SELECTION].timeout):
                observation = self.backend.run(self.vector, self.profile)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends end the session as usual
            self.record("error", f"{type(exc).__name__}: {exc}")
            raise
        verdict = judge(self.vector, observation, info.observables)
        if verdict.ignored:
            self.add_report_section("call", "ignored observables",
                                    f"backend {info.name} cannot observe: " + "; ".join(verdict.ignored))
        known = info.known_failure(self.vector.id, self.profile.value)
        if known is not None:
            self.expected_failure(known, verdict)
        self.record("passed" if verdict.passed else "failed", "\n".join(verdict.diffs), verdict.ignored)
        if not verdict.passed:
            raise VectorMismatch(verdict)

    def expected_failure(self, known: KnownFailure, verdict: Verdict) -> None:
        """A declared failure: failing is expected, passing is an error (strict)."""
        if verdict.passed:
            self.record("failed", f"declared to fail ({known.reason}) but passed", verdict.ignored)
            pytest.fail(f"backend {self.backend.info.name} passed an item it declares to fail: {known.reason}",
                        pytrace=False)
        self.record("xfailed", known.reason + "\n" + "\n".join(verdict.diffs), verdict.ignored)
        self.add_report_section("call", "expected failure", "\n".join(verdict.diffs))
        pytest.xfail(known.reason)

    def rerun_command(self) -> str:
        return f"python -m pytest -p no:xdist {shlex.quote(self.nodeid)}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Optional[str] = None) -> str:
        where = os.path.relpath(self.path, self.config.rootpath)
        head = [f"vector {self.vector.id} ({where}:{self.vector.line})",
                f"  {self.vector.description}",
                f"  backend {self.backend.info.name} {self.backend.info.version}, profile {self.profile.value}"]
        if isinstance(excinfo.value, VectorMismatch):
            body = list(excinfo.value.verdict.diffs)
        elif isinstance(excinfo.value, (pytest.xfail.Exception, pytest.fail.Exception)):
            body = [str(excinfo.value)]  # a declared failure, or a declared one that passed: no traceback
        else:
            body = [f"backend {self.backend.info.name} raised {excinfo.typename}: {excinfo.value}",
                    str(super().repr_failure(excinfo, style="short"))]
        return "\n".join(head + body + [f"re-run: {self.rerun_command()}"])

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, max(self.vector.line - 1, 0), f"{self.vector.id} [{self.backend.info.name}:{self.profile.value}]"
