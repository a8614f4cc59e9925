"""Results per item, the backend x result matrix, and the JSON report."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

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

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: all fields are plain


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
                self.results[report.nodeid] = Result(**{**value, "ignored": tuple(value["ignored"])})

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(report.nodeid)

    def matrix(self) -> list[str]:
        counts: Counter[tuple[str, str, str]] = Counter()
        ignored: Counter[tuple[str, str]] = Counter()
        for r in self.results.values():
            counts[(r.backend, r.profile, r.outcome)] += 1
            ignored[(r.backend, r.profile)] += bool(r.ignored)
        rows = sorted({(b, p) for b, p, _ in counts})
        width = max([len(b) for b, _ in rows] + [7])
        lines = [f"{'backend':<{width}}  {'profile':<9} " + " ".join(f"{o:>8}" for o in OUTCOMES) + "  ignored-obs"]
        for b, p in rows:
            lines.append(f"{b:<{width}}  {p:<9} " + " ".join(f"{counts[(b, p, o)]:>8}" for o in OUTCOMES)
                         + f"  {ignored[(b, p)]:>11}")
        return lines

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results and not self.collect_errors:
            return
        tr = terminalreporter
        tr.write_sep("=", "conformance matrix (backend x result)")
        for line in self.matrix():
            tr.write_line(line)
        for name, backend in sorted(self.registry.backends.items()):
            if backend.info.unavailable:
                tr.write_line(f"{name}: unavailable: {backend.info.unavailable}")
        for error in self.registry.errors:
            tr.write_line(f"plugin error: {error.source}: {error.message}")
        for nodeid in self.collect_errors:
            tr.write_line(f"vector file not loaded: {nodeid}")
        blind = Counter((r.backend, r.profile, i.split(": ", 1)[-1]) for r in self.results.values() for i in r.ignored)
        for (backend, profile, what), n in sorted(blind.items()):
            tr.write_line(f"ignored on {backend}/{profile}: {what} in {n} item(s)")
        reasons = Counter((r.backend, r.detail) for r in self.results.values() if r.outcome == "skipped")
        for (backend, reason), n in sorted(reasons.items()):
            tr.write_line(f"skipped {n} on {backend}: {reason}")

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.getoption("conformance_json")
        if path and not hasattr(self.config, "workerinput"):  # the xdist controller writes it
            with open(path, "w", encoding="utf-8") as out:
                json.dump([r.as_dict() for r in sorted(self.results.values(), key=lambda r: r.nodeid)], out, indent=1)
