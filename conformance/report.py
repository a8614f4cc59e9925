"""Results per item, the backend x result matrix, and the JSON report."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

import pytest

from .registry import Registry

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")


@dataclass(frozen=True)
class Result:
    nodeid: str
    vector: str
    backend: str
    profile: str
    outcome: str  # one of OUTCOMES; xfailed = a failure the backend declared (KnownFailure)
    detail: str = ""
    ignored: tuple[str, ...] = ()
    where: Mapping[str, str] = field(default_factory=dict)  # the machine the backend ran on (BackendInfo.where)

    def as_dict(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**plain, "where": dict(self.where)}


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
        lines.append(f"{b:<{width}}  {p:<9} " + " ".join(f"{counts[(b, p, o)]:>8}" for o in OUTCOMES)
                     + f"  {ignored[(b, p)]:>11}")
    return lines


def note_lines(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """What the matrix does not say: observables ignored and skip reasons, counted, from Result dicts."""
    results = list(results)
    blind = Counter((r["backend"], r["profile"], i.split(": ", 1)[-1]) for r in results for i in r.get("ignored", ()))
    reasons = Counter((r["backend"], r["detail"]) for r in results if r["outcome"] == "skipped")
    return ([f"ignored on {backend}/{profile}: {what} in {n} item(s)" for (backend, profile, what), n in sorted(blind.items())]
            + [f"skipped {n} on {backend}: {reason}" for (backend, reason), n in sorted(reasons.items())])


class MatrixReporter:
    """Collects Results from test reports (xdist forwards user_properties to
    the controller) and prints one row per (backend, profile)."""

    def __init__(self, config: pytest.Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.results: dict[str, Result] = {}
        self.collect_errors: list[str] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == "conformance":
                self.results[report.nodeid] = Result(**{**value, "ignored": tuple(value["ignored"]),
                                                        "where": dict(value.get("where", {}))})

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(report.nodeid)

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
        for nodeid in self.collect_errors:
            tr.write_line(f"vector file not loaded: {nodeid}")
        for line in note_lines(results):
            tr.write_line(line)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.getoption("conformance_json")
        if path and not hasattr(self.config, "workerinput"):  # the xdist controller writes it
            with open(path, "w", encoding="utf-8") as out:
                json.dump([r.as_dict() for r in sorted(self.results.values(), key=lambda r: r.nodeid)], out, indent=1)
