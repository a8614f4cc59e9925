"""Known failures in a run: gathered per backend, looked up per item, and
checked for stale entries.

A backend's known failures come from the --expectations files (entries
naming it), its own expectations file (BackendInfo.expectations) and
BackendInfo.known_failures, in that order: the first entry that matches an
item gives the reason shown. An entry that matches no collected item of
its backend (in its profile, if it names one) is stale, and a stale entry
fails the run, but only when the run is whole: see `narrowing`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from . import expectations
from .contract import BackendInfo, KnownFailure
from .model import Profile

WORKER_KEY = "conformance_stale_expectations"  # xdist: a worker's findings, read by the controller
WILDCARDS = frozenset("*?[")


@dataclass(frozen=True)
class KnownFailures:
    """One backend's entries, indexed: most patterns are exact vector ids."""

    backend: str
    entries: tuple[KnownFailure, ...]
    exact: Mapping[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    wild: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, tuple[int, ...]] = {}
        for number, entry in enumerate(self.entries):
            if not WILDCARDS & set(entry.pattern):
                exact[entry.pattern] = exact.get(entry.pattern, ()) + (number,)
        object.__setattr__(self, "exact", exact)
        object.__setattr__(self, "wild", tuple(n for n, e in enumerate(self.entries) if WILDCARDS & set(e.pattern)))

    @classmethod
    def gather(cls, info: BackendInfo, given: Iterable[expectations.Expectation] = ()) -> KnownFailures:
        """Raises LoadError for a bad expectations file of the backend's."""
        own = expectations.load(info.expectations, owner=info.name) if info.expectations is not None else ()
        coded = tuple(
            k if k.origin else replace(k, origin=f"backend {info.name}: BackendInfo.known_failures[{n}]")
            for n, k in enumerate(info.known_failures)
        )
        chosen = tuple(e.failure for e in given if e.backend == info.name) + tuple(e.failure for e in own)
        return cls(info.name, chosen + coded)

    def find(self, vector_id: str, profile: str) -> KnownFailure | None:
        """The first entry that matches the item."""
        candidates = list(self.exact.get(vector_id, ())) + list(self.wild)
        matching = [n for n in candidates if self.entries[n].matches(vector_id, profile)]
        return self.entries[min(matching)] if matching else None

    def stale(self, items: Iterable[tuple[str, str]]) -> list[str]:
        """Entries that match none of these (profile, vector id) items."""
        items = list(items)
        ids = {(profile, vector) for profile, vector in items}
        found: list[str] = []
        for entry in self.entries:
            if not WILDCARDS & set(entry.pattern):
                hit = any((p.value, entry.pattern) in ids for p in _profiles(entry))
            else:
                hit = any(entry.matches(vector, profile) for profile, vector in items)
            if not hit:
                scope = f" in profile {entry.profile}" if entry.profile else ""
                found.append(
                    f"{entry.origin}: pattern {entry.pattern!r} matches no collected item of backend "
                    f"{self.backend}{scope} (a stale entry: remove or fix it)"
                )
        return found


def _profiles(entry: KnownFailure) -> list[Profile]:
    return [Profile(entry.profile)] if entry.profile else list(Profile)


def load_given(paths: Iterable[str], registered: Collection[str]) -> tuple[expectations.Expectation, ...]:
    """The --expectations files; LoadError names file, line and key of the
    first problem (an entry naming an unregistered backend included)."""
    return tuple(entry for path in paths for entry in expectations.load(path, registered=registered))


def narrowing(config: pytest.Config, suites: Iterable[Path]) -> list[str]:
    """What makes this run less than whole, as far as the command line says
    (deselection is seen later): then no entry can be called stale."""
    reasons = []
    for option, name in (
        ("profile", "--profile"),
        ("lf", "--lf"),
        ("ignore", "--ignore"),
        ("ignore_glob", "--ignore-glob"),
    ):
        if config.getoption(option, None):
            reasons.append(name)
    here = Path(str(config.invocation_params.dir))
    named = [(here / arg.split("::", 1)[0]).resolve() for arg in config.args]
    existing = [s for s in suites if s.is_dir()]
    if any("::" in arg for arg in config.args):
        reasons.append("a node id")
    if any(p != s and p.is_relative_to(s) for p in named for s in existing):
        reasons.append("a path inside a suite directory")
    if any(not any(s.is_relative_to(p) for p in named) for s in existing):
        reasons.append("a suite directory not named")
    return reasons


@dataclass(frozen=True)
class CollectedItems:
    """What the stale check needs of a collection: (backend, profile,
    vector id) of every vector item, and whether every vector loaded."""

    items: tuple[tuple[str, str, str], ...]
    complete: bool


class StaleCheck:
    """Finds stale entries where items are collected (an xdist worker or a
    plain run), and fails the session with them where it ends."""

    def __init__(
        self,
        config: pytest.Config,
        reasons: list[str],
        known: Callable[[], Mapping[str, KnownFailures]],
        collected: Callable[[list[pytest.Item]], CollectedItems],
    ) -> None:
        self.config, self.reasons, self.known, self.collected = config, reasons, known, collected
        self.problems: list[str] = []

    def narrow(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    @pytest.hookimpl
    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        if items:
            self.narrow("deselected items (-k, -m, --deselect, --flag, --bug-class, ...)")

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.narrow("a vector file that did not load")

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        collected = self.collected(session.items)
        if not collected.items:
            return  # no vector was collected: nothing was asked of the backends
        if not collected.complete:
            self.narrow("a vector that did not load")
        if self.reasons:
            return
        known = self.known()
        by_backend: dict[str, list[tuple[str, str]]] = {}
        for backend, profile, vector in collected.items:
            by_backend.setdefault(backend, []).append((profile, vector))
        for backend, items in sorted(by_backend.items()):
            if backend in known:
                self.problems += known[backend].stale(items)
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_KEY] = list(self.problems)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist's controller: every worker collects the same items, so each reports the same."""
        for problem in getattr(node, "workeroutput", {}).get(WORKER_KEY, ()):
            if problem not in self.problems:
                self.problems.append(problem)

    @pytest.hookimpl(trylast=True)  # after the matrix
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for problem in self.problems:
            terminalreporter.write_line(f"expectations error: {problem}")
        if self.problems:
            terminalreporter.write_line("the run fails: every expectation entry must match an item of a whole run")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.problems and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
