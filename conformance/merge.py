"""Results files from several machines merged into one, and the matrix's
columns: a backend's profile on one machine (the run's host and where facts)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .results import OUTCOMES, Result, Results, Run


def _identity(run: Run) -> str | None:
    """Two files holding the same run (an input merged twice, or a merged file
    beside its inputs) count it once; a legacy run has nothing to compare."""
    return None if run.legacy else json.dumps(replace(run, source="").as_dict(), sort_keys=True)


def merge(documents: Iterable[Results]) -> Results:
    runs: list[Run] = []
    results: list[Result] = []
    seen: set[str] = set()
    for document in documents:
        for index, run in enumerate(document.runs):
            key = _identity(run)
            if key is not None and key in seen:
                continue
            if key is not None:
                seen.add(key)
            results += [replace(r, run=len(runs)) for r in document.results if r.run == index]
            runs.append(run)
    return Results(tuple(runs), tuple(results))


def machine(run: Run, result: Result) -> str:
    """The host, then what the backend said about where it ran."""
    host = run.host or (f"legacy {run.source}" if run.source else "unknown host")
    facts = ", ".join(f"{k}={v}" for k, v in sorted(result.where.items()))
    return f"{host} ({facts})" if facts else host


@dataclass(frozen=True)
class Column:
    backend: str
    profile: str
    machine: str
    run: int | None = None  # set only when two runs share the rest: each keeps its own column

    @property
    def where(self) -> str:
        return self.machine + (f" [run {self.run + 1}]" if self.run is not None else "")


def columns(merged: Results) -> list[Column]:
    """One Column per item, in item order."""
    plain = [Column(r.backend, r.profile, machine(merged.runs[r.run], r)) for r in merged.results]
    runs_of: dict[Column, set[int]] = {}
    for column, r in zip(plain, merged.results):
        runs_of.setdefault(column, set()).add(r.run)
    return [replace(c, run=r.run) if len(runs_of[c]) > 1 else c for c, r in zip(plain, merged.results)]


def matrix_lines(merged: Results, cols: Sequence[Column] | None = None) -> list[str]:
    """Outcome counts per column, as text."""
    cols = columns(merged) if cols is None else cols
    counts: Counter[tuple[Column, str]] = Counter((c, r.outcome) for c, r in zip(cols, merged.results))
    order = sorted(set(cols), key=lambda c: (c.backend, c.profile, c.machine, c.run or 0))
    width = max([len(c.backend) for c in order] + [7])
    lines = [f"{'backend':<{width}}  {'profile':<9} " + " ".join(f"{o:>8}" for o in OUTCOMES) + "  machine"]
    for c in order:
        cells = " ".join(f"{counts[(c, o)]:>8}" for o in OUTCOMES)
        lines.append(f"{c.backend:<{width}}  {c.profile:<9} {cells}  {c.where}")
    total = Counter(r.outcome for r in merged.results)
    lines.append(f"{'total':<{width}}  {'':<9} " + " ".join(f"{total[o]:>8}" for o in OUTCOMES))
    return lines
