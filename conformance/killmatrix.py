"""The kill matrix: which vectors catch which mutant.

A mutant is killed by an item when the item fails or errors on it; a mutant
no item kills survived, which means the suite does not pin down the rule
the mutant breaks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .contract import Backend
from .model import Vector
from .timeout import deadline
from .verdict import judge


@dataclass(frozen=True)
class MutantResult:
    name: str
    rule: str
    kills: Counter[str]  # suite file -> killing items
    killers: tuple[str, ...]  # "<vector id>[<profile>]" of every killing item
    ran: int

    @property
    def survived(self) -> bool:
        return not self.killers


def kills(backend: Backend, vector: Vector, timeout: float) -> list[str]:
    """The profiles under which the backend fails or breaks on the vector."""
    caught = []
    for profile in sorted(vector.profiles & backend.info.profiles):
        if backend.info.unmet(vector.requires | {f"profile:{profile.value}"}):
            continue
        try:
            with deadline(timeout):
                observation = backend.run(vector, profile)
            failed = not judge(vector, observation, backend.info.observables).passed
        except Exception:  # a crash or timeout is a detection too
            failed = True
        if failed:
            caught.append(profile.value)
    return caught


# A split 1G page is 262144 leaves: a second or more per run in the
# reference's Python, times every mutant. Such vectors still run on every
# real backend; the matrix leaves them out unless asked (--max-leaves 0).
DEFAULT_MAX_LEAVES = 1 << 16


def leaf_count(vector: Vector) -> int:
    """The most leaves any state of the vector holds, initial or expected."""
    sizes = [len(vector.state.mappings)] + [len(s.expect.mappings or ()) for s in vector.steps]
    return max(sizes)


def within_budget(vectors: Sequence[Vector], max_leaves: int) -> tuple[list[Vector], list[Vector]]:
    """(vectors to run, vectors left out); 0 means no budget."""
    if not max_leaves:
        return list(vectors), []
    kept = [v for v in vectors if leaf_count(v) <= max_leaves]
    return kept, [v for v in vectors if leaf_count(v) > max_leaves]


def run_matrix(mutants: Sequence[Backend], vectors: Sequence[Vector], timeout: float = 10.0) -> list[MutantResult]:
    results = []
    for mutant in mutants:
        counts: Counter[str] = Counter()
        killers = []
        for vector in vectors:
            for profile in kills(mutant, vector, timeout):
                counts[vector.path] += 1
                killers.append(f"{vector.id}[{profile}]")
        results.append(
            MutantResult(mutant.info.name, mutant.info.details.get("rule", ""), counts, tuple(killers), len(vectors))
        )
    return results


def render(results: Sequence[MutantResult], root: Path) -> str:
    files = sorted({f for r in results for f in r.kills})
    short = {f: _short(f, root) for f in files}
    width = max([len(r.name) for r in results] + [6])
    out = ["kill matrix: killing items per mutant (rows) and vector file (columns)", ""]
    out += [f"  [{i}] {short[f]}" for i, f in enumerate(files)]
    out.append("")
    out.append(f"{'mutant':<{width}}  " + " ".join(f"{f'[{i}]':>5}" for i in range(len(files))) + "  total")
    for r in results:
        cells = " ".join(f"{r.kills.get(f, 0) or '.':>5}" for f in files)
        status = "  SURVIVED" if r.survived else ""
        out.append(f"{r.name:<{width}}  {cells}  {len(r.killers):>5}{status}")
    survived = [r.name for r in results if r.survived]
    out.append("")
    out.append(
        f"{len(results) - len(survived)}/{len(results)} mutants killed"
        + (f"; survived: {', '.join(survived)}" if survived else "")
    )
    return "\n".join(out)


def _short(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path
