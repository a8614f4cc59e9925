"""Merged results as one self-contained HTML page.

The items travel once, as compact JSON inside the page: strings interned in
tables, each item six integers. The page's script builds only what is shown
(totals and the matrix at load, everything else when opened, a page of rows
at a time), so a page of 100,000 items is ready in a fraction of a second
(docs/results.md).
"""

from __future__ import annotations

import json
import shlex
from importlib import resources
from typing import Any

from . import runmeta
from .merge import Column, columns
from .results import OUTCOMES, Results, Run

FIELDS = 6  # per item: column, vector, outcome, detail, known failure, ignored (the last three index `texts`)


class _Table:
    """Interns values: the first is index 0."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}

    def __call__(self, value: Any) -> int:
        return self.index.setdefault(value, len(self.index))

    def values(self) -> list[Any]:
        return list(self.index)


def _run(run: Run) -> dict[str, Any]:
    return {
        "source": run.source,
        "host": run.host,
        "kernel": run.kernel,
        "started": run.started,
        "finished": run.finished,
        "framework": run.framework_version,
        "suite": run.suite_hash,
        "files": run.suite_files,
        "backends": [[b.name, b.version, b.unavailable] for b in run.backends],
        "command": shlex.join(run.argv),
        "exit": run.exit_status,
        "legacy": run.legacy,
    }


def page_data(merged: Results) -> dict[str, Any]:
    cols = columns(merged)
    col_index: dict[Column, int] = {}
    for c in sorted(set(cols), key=lambda c: (c.backend, c.profile, c.machine, c.run or 0)):
        col_index[c] = len(col_index)
    flags, vectors, texts = _Table(), _Table(), _Table()
    texts("")
    vector_rows: dict[int, list[Any]] = {}
    outcome = {o: i for i, o in enumerate(OUTCOMES)}
    items: list[int] = []
    for c, r in zip(cols, merged.results):
        v = vectors(r.vector)
        if v not in vector_rows:  # a vector's text and flags are the same in every item
            vector_rows[v] = [r.vector, r.description, [flags((f.name, f.bug_class)) for f in r.flags]]
        items += [
            col_index[c],
            v,
            outcome.get(r.outcome, outcome["error"]),
            texts(r.detail),
            texts(r.known_failure),
            texts("\n".join(r.ignored)),
        ]
    return {
        "generated": runmeta.now(),
        "outcomes": list(OUTCOMES),
        "runs": [_run(run) for run in merged.runs],
        "columns": [[c.backend, c.profile, c.machine, c.run] for c in col_index],
        "flags": [list(f) for f in flags.values()],
        "vectors": [vector_rows[i] for i in range(len(vector_rows))],
        "texts": texts.values(),
        "items": items,
    }


def _asset(name: str) -> str:
    return (resources.files("conformance") / "html" / name).read_text(encoding="utf-8")


def render(merged: Results) -> str:
    # "<" escaped: no string in the data can close the script element
    data = json.dumps(page_data(merged), separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    return (
        _asset("report.html")
        .replace("/*STYLE*/", _asset("report.css"))
        .replace("/*SCRIPT*/", _asset("report.js"))
        .replace("{{DATA}}", data)
    )
