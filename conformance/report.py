"""Results per item, the backend x result matrix, and the results file."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from . import runmeta
from .contract import BackendInfo
from .flagreg import find_registry, suite_name
from .registry import Registry
from .results import OUTCOMES, Result, Results, dump

__all__ = ["OUTCOMES", "RESULT_KEY", "SELECTED_BACKENDS", "MatrixReporter", "Result"]

RESULT_KEY = "conformance"  # the user property that carries an item's Result, as JSON
# The selected backends' infos, constructing them if need be: the xdist
# controller collects nothing, so it has them only when it asks.
SELECTED_BACKENDS = pytest.StashKey[Callable[[], Sequence[BackendInfo]]]()


def from_nodeid(nodeid: str, outcome: str, detail: str, rootdir: Path = Path(".")) -> Result | None:
    """A Result for an item whose own record never arrived (its process died
    under xdist), from its node id `path::local[backend:profile]`; the
    vector id is the file's name under its suite root, then `local`."""
    path, sep, rest = nodeid.partition("::")
    if not sep or not rest.endswith("]") or "[" not in rest:
        return None
    local, _, param = rest[:-1].rpartition("[")
    backend, _, profile = param.partition(":")
    file = str(rootdir / path)
    return Result(nodeid, f"{suite_name(file, find_registry(file))}::{local}", backend, profile, outcome, detail)


def matrix_lines(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """One row per (backend, profile) with a count per outcome, from Result dicts."""
    counts: Counter[tuple[str, str, str]] = Counter()
    ignored: Counter[tuple[str, str]] = Counter()
    for r in results:
        counts[(r["backend"], r["profile"], r["outcome"])] += 1
        ignored[(r["backend"], r["profile"])] += bool(r.get("ignored"))
    rows = sorted({(b, p) for b, p, _ in counts})
    width = max([len(b) for b, _ in rows] + [7])
    lines = [f"{'backend':<{width}}  {'profile':<9} " + " ".join(f"{o:>8}" for o in OUTCOMES) + "  ignored-obs"]
    for b, p in rows:
        lines.append(
            f"{b:<{width}}  {p:<9} "
            + " ".join(f"{counts[(b, p, o)]:>8}" for o in OUTCOMES)
            + f"  {ignored[(b, p)]:>11}"
        )
    return lines


def note_lines(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """What the matrix does not say: observables ignored and skip reasons, counted, from Result dicts."""
    results = list(results)
    blind = Counter((r["backend"], r["profile"], i.split(": ", 1)[-1]) for r in results for i in r.get("ignored", ()))
    reasons = Counter((r["backend"], r["detail"]) for r in results if r["outcome"] == "skipped")
    return [
        f"ignored on {backend}/{profile}: {what} in {n} item(s)"
        for (backend, profile, what), n in sorted(blind.items())
    ] + [f"skipped {n} on {backend}: {reason}" for (backend, reason), n in sorted(reasons.items())]


class MatrixReporter:
    """Collects Results from test reports (xdist forwards user_properties to
    the controller), prints one row per (backend, profile) and writes the
    results file."""

    def __init__(self, config: pytest.Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.results: dict[str, Result] = {}
        self.collect_errors: list[str] = []
        self.started = runmeta.now()

    @pytest.hookimpl
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.started = runmeta.now()

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and report.passed and report.nodeid in self.results:
            return  # the teardown report repeats what the call report said
        for key, value in report.user_properties:
            if key == RESULT_KEY:
                # the runner's own property: a Result as JSON text (or already decoded)
                data = json.loads(value) if isinstance(value, str) else value
                self.results[report.nodeid] = Result.from_dict(cast("Mapping[str, Any]", data))
        if report.failed and report.nodeid not in self.results and report.nodeid.split("::", 1)[0].endswith(".toml"):
            # no record: the process running the item died (xdist reports "worker ... crashed")
            first = str(report.longrepr).strip().splitlines()[:1] or ["no report"]
            found = from_nodeid(report.nodeid, "crashed", first[0], Path(str(self.config.rootpath)))
            if found is not None:
                self.results[report.nodeid] = found

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.failed or report.nodeid in self.collect_errors:
            return  # under xdist every worker reports the same file
        self.collect_errors.append(report.nodeid)
        if report.nodeid.endswith(".toml"):  # a vector file that did not load: one error for the whole file
            file = str(Path(str(self.config.rootpath)) / report.nodeid)
            vector = suite_name(file, find_registry(file))
            self.results[report.nodeid] = Result(report.nodeid, vector, "loader", "-", "error", str(report.longrepr))

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results and not self.collect_errors:
            return
        tr = terminalreporter
        tr.write_sep("=", "conformance matrix (backend x result)")
        results = [r.as_dict() for r in self.results.values()]
        for line in matrix_lines(results):
            tr.write_line(line)
        for name, backend in sorted(self.registry.backends.items()):
            if backend.info.unavailable:
                tr.write_line(f"{name}: unavailable: {backend.info.unavailable}")
        for error in self.registry.errors:
            tr.write_line(f"plugin error: {error.source}: {error.message}")
        if self.registry.errors:
            tr.write_line("the run fails: a backend could not be loaded (exclude it with --skip-backend NAME)")
        for nodeid in self.collect_errors:
            tr.write_line(f"vector file not loaded: {nodeid}")
        for line in note_lines(results):
            tr.write_line(line)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.registry.errors and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # fail closed: a backend that did not load
        path = self.config.getoption("conformance_json")
        if path and not hasattr(self.config, "workerinput"):  # the xdist controller writes it
            dump(self.document(int(session.exitstatus)), path)

    def document(self, exit_status: int) -> Results:
        """This run and its items, sorted by node id."""
        selected = self.config.stash.get(SELECTED_BACKENDS, None)
        backends = selected() if selected is not None and self.results else ()
        root = Path(str(self.config.rootpath))
        run = runmeta.this_run(
            tuple((root / s).resolve() for s in self.config.getini("conformance_suites")),
            backends,
            self.started,
            self.config.invocation_params.args,
            Path(str(self.config.invocation_params.dir)),
            exit_status,
        )
        return Results((run,), tuple(sorted(self.results.values(), key=lambda r: r.nodeid)))
