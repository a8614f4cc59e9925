"""Live coverage: which rules of the mainline event layer a real kernel has
checked, read from the results files of live runs (`--conformance-json`).

A unit is a decision-table row (its standard-fixture vector) or an explicit
vector. It is covered live when a live backend passed it, or passed a vector
that pins it (`Vector.pins`: the live-fixture variant of a row, or an
explicit variant). Rows that need rmaps beside the TDP MMU need a nested
(L2) guest and are listed apart with that reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import capabilities
from .load import load_all
from .model import Layer, Profile, Vector, VmType
from .results import load_results

NESTED = "needs rmaps beside the TDP MMU: a nested (L2) guest, which no live run here has"
# States only a model can hold: no host action builds them, so no kernel run can start from them.
MODEL_ONLY = {
    "invalid_roots": "leaves in roots already marked invalid: a kernel zaps them inside the same call",
    "attribute-mismatch": "a leaf whose kind differs from its GFN's attribute: faults and conversions keep them equal",
}
EXCUSED = ("nested", "model-only", "newer kernel")  # rules a live run here cannot check, each listed with why


@dataclass(frozen=True)
class Unit:
    vector: Vector
    status: str  # "itself", "variant", "failed", "not run", or one of EXCUSED
    where: tuple[str, ...]  # the results files that passed it (or its variant)
    why: str = ""  # for "not run" / "failed": the skip reasons or the failure

    @property
    def live(self) -> bool:
        return self.status in ("itself", "variant")

    @property
    def group(self) -> str:
        vm = self.vector.state.vm
        return f"{vm.type.value}/{'TDP' if vm.tdp_mmu else 'shadow'}"


@dataclass(frozen=True)
class Run:
    """One results file: the machine it names, and its scope items for that
    machine's MMU and VM types (the ones it could reach) and their outcomes."""

    where: str
    reachable: int
    passed: int
    failed: int


@dataclass(frozen=True)
class LiveReport:
    units: tuple[Unit, ...]
    passed_items: dict[str, int]  # results file -> items of the scope it passed
    runs: dict[str, Run]  # results file -> where it ran and what it could reach
    distinct_passed: int  # scope items (units and variants) passed in any file
    scope_items: int
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors and all(u.live or u.status in EXCUSED for u in self.units)


def in_scope(v: Vector, vm_types: frozenset[VmType]) -> bool:
    return Profile.MAINLINE in v.profiles and v.layers == frozenset({Layer.EVENT}) and v.state.vm.type in vm_types


def check(
    suites: Sequence[str | Path],
    results: Sequence[str | Path],
    backend: str = "kernel",
    vm_types: Iterable[VmType] = (VmType.DEFAULT, VmType.SW_PROTECTED),
) -> LiveReport:
    types = frozenset(vm_types)
    loaded = load_all(suites)
    vectors: dict[str, Vector] = {v.id: v for v in loaded.vectors}
    errors: list[str] = [str(e) for e in loaded.errors]
    scope = {vid: v for vid, v in vectors.items() if in_scope(v, types)}
    errors += [
        f"{v.path}:{v.line}: {vid} pins {v.pins!r}, which is no vector of the suite"
        for vid, v in vectors.items()
        if v.pins and v.pins not in vectors
    ]
    outcome: dict[str, dict[str, str]] = defaultdict(dict)  # vector id -> results file -> "outcome: detail"
    passed_items: dict[str, int] = {}
    runs: dict[str, Run] = {}
    for path in results:
        name = Path(path).name
        items = [r.as_dict() for r in load_results(path).results]
        mine = [r for r in items if r["backend"] == backend and r["profile"] == Profile.MAINLINE.value]
        for r in mine:
            outcome[r["vector"]][name] = f"{r['outcome']}: {r.get('detail', '')}"
        passed_items[name] = sum(r["outcome"] == "passed" and r["vector"] in scope for r in mine)
        runs[name] = run_of(mine, scope)
    pinned_by: dict[str, list[str]] = defaultdict(list)
    for vid, v in scope.items():
        if v.pins:
            pinned_by[v.pins].append(vid)
    units = [unit(v, outcome, pinned_by) for vid, v in sorted(scope.items()) if not v.pins]
    distinct = sum(any(o.startswith("passed") for o in outcome[vid].values()) for vid in scope)
    return LiveReport(tuple(units), passed_items, runs, distinct, len(scope), tuple(errors))


def run_of(results: list[dict[str, Any]], scope: dict[str, Vector]) -> Run:
    where: dict[str, str] = next((r["where"] for r in results if r.get("where")), {})
    if not where:
        return Run("unknown machine", 0, 0, 0)
    tdp = where.get("tdp_mmu") == "Y"
    types = set(where.get("vm_types", "").split(","))
    mine = {
        vid
        for vid, v in scope.items()
        if v.state.vm.tdp_mmu == tdp
        and v.state.vm.type.value in types
        and not (v.state.vm.tdp_mmu and v.state.vm.rmaps)
        and not MODEL_ONLY.keys() & v.requires
    }
    label = f"Linux {where.get('kernel', '?')}, tdp_mmu={where.get('tdp_mmu', '?')}, npt={where.get('npt', '?')}"
    if where.get("machine"):
        label = f"{where['machine']}: {label}"
    outcomes = [r["outcome"] for r in results if r["vector"] in mine]
    return Run(label, len(mine), outcomes.count("passed"), outcomes.count("failed") + outcomes.count("error"))


def unit(v: Vector, outcome: dict[str, dict[str, str]], pinned_by: dict[str, list[str]]) -> Unit:
    def passed(vid: str) -> tuple[str, ...]:
        return tuple(sorted(f for f, o in outcome[vid].items() if o.startswith("passed")))

    failures = [
        f"{vid} in {f}: {o}"
        for vid in [v.id, *pinned_by[v.id]]
        for f, o in outcome[vid].items()
        if o.startswith(("failed", "error"))
    ]
    if failures:
        return Unit(v, "failed", (), "; ".join(failures))
    if passed(v.id):
        return Unit(v, "itself", passed(v.id))
    via = tuple(sorted({f for vid in pinned_by[v.id] for f in passed(vid)}))
    if via:
        return Unit(v, "variant", via)
    if v.state.vm.tdp_mmu and v.state.vm.rmaps:
        return Unit(v, "nested", (), NESTED)
    model_only = [why for tag, why in MODEL_ONLY.items() if tag in v.requires]
    if model_only:
        return Unit(v, "model-only", (), "; ".join(model_only))
    newer = sorted(t for t in v.requires if capabilities.version_tag(t) is not None)
    if newer:
        return Unit(
            v,
            "newer kernel",
            (),
            f"needs {', '.join(newer)} on a live kernel with its other requirements; "
            f"the runs skipped it: " + " | ".join(skip_reasons(v, outcome, pinned_by)),
        )
    return Unit(v, "not run", (), " | ".join(skip_reasons(v, outcome, pinned_by)) or "in no results file")


def skip_reasons(v: Vector, outcome: dict[str, dict[str, str]], pinned_by: dict[str, list[str]]) -> list[str]:
    return sorted(
        {f"{f}: {o.split(': ', 1)[1][:160]}" for vid in [v.id, *pinned_by[v.id]] for f, o in outcome[vid].items()}
    )


def render(report: LiveReport, verbose: bool = False) -> str:
    out = [f"load error: {e}" for e in report.errors]
    groups: dict[str, list[Unit]] = defaultdict(list)
    for u in report.units:
        groups[u.group].append(u)
    columns = ("itself", "variant", "nested", "model-only", "newer kernel", "failed", "not run")
    out.append(f"{'VM/MMU':<18}{'rules':>6}" + "".join(f"{c:>13}" for c in columns))
    for group, units in sorted(groups.items()):
        out.append(f"{group:<18}{len(units):>6}" + "".join(f"{sum(u.status == c for u in units):>13}" for c in columns))
    live = sum(u.live for u in report.units)
    excused = {c: sum(u.status == c for u in report.units) for c in EXCUSED}
    out.append(
        f"rules checked live: {live} of {len(report.units)} ("
        + ", ".join(f"{n} {c}" for c, n in excused.items())
        + ": listed below with why)"
    )
    for name in report.passed_items:
        run = report.runs[name]
        out.append(
            f"  {name} ({run.where}): {run.passed} passed, {run.failed} failed of {run.reachable} items "
            "for its MMU and VM types (not nested, not model-only)"
        )
    out.append(f"items passed live in any file: {report.distinct_passed} of {report.scope_items} in scope")
    shown = [u for u in report.units if verbose or u.status not in ("itself", "variant", "nested")]
    for u in shown:
        where = f" ({', '.join(u.where)})" if u.where else ""
        out.append(f"  {u.status:<12} {u.vector.id}{where}{': ' + u.why if u.why else ''}")
    if not verbose:
        out.append(f"  nested: {excused['nested']} rows ({NESTED}); --verbose lists every rule")
    out.append("live coverage: OK" if report.ok else "live coverage: INCOMPLETE")
    return "\n".join(out)
