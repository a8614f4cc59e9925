"""The coverage proof: every reachable combination of the declared axes
(axes.py) is named by exactly one decision-table row, per profile.

Enumeration and counting only; the rows' expectations are judged by the
backends, not here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import axes
from .axes import Combination, Space, Unreachable
from .load import load_all
from .model import Profile, Vector


@dataclass(frozen=True)
class OpCount:
    op: str
    space: int  # product of the axes' sizes
    reachable: int
    covered: int


@dataclass(frozen=True)
class ProfileCoverage:
    profile: Profile
    ops: tuple[OpCount, ...]
    missing: tuple[Combination, ...]
    doubled: tuple[tuple[Combination, tuple[str, ...]], ...]  # combination, where each row is
    stray: tuple[tuple[Combination, str], ...]  # rows outside the declared space (unreachable)
    unreachable: tuple[tuple[Unreachable, int], ...]  # rule, combinations it removes (first match)
    vectors: int  # vectors that run under this profile (explicit + expanded rows + their variants)
    explicit: int
    variants: int
    row_vectors: int
    rows_written: int

    @property
    def reachable(self) -> int:
        return sum(o.reachable for o in self.ops)

    @property
    def covered(self) -> int:
        return sum(o.covered for o in self.ops)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.doubled or self.stray)


@dataclass(frozen=True)
class Report:
    profiles: tuple[ProfileCoverage, ...]
    errors: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors and all(p.ok for p in self.profiles)


def _where(vector: Vector) -> str:
    return f"{vector.path}:{vector.line} ({vector.id})"


def profile_coverage(space: Space, vectors: Sequence[Vector]) -> ProfileCoverage:
    mine = [v for v in vectors if space.profile in v.profiles]
    rows = [v for v in mine if v.row and not v.pins]  # a variant pins a row another vector covers
    named: dict[Combination, list[str]] = defaultdict(list)
    for vector in rows:
        named[vector.row].append(_where(vector))
    ops, missing = [], []
    removed: Counter[Unreachable] = Counter()
    known: dict[Combination, object] = {}  # every combination of the space -> its blocking rule or None
    for op in space.ops:
        total = reachable = covered = 0
        for combo, rule in space.combinations(op):
            total += 1
            known[combo] = rule
            if rule is not None:
                removed[rule] += 1
                continue
            reachable += 1
            if combo in named:
                covered += 1
            else:
                missing.append(combo)
        ops.append(OpCount(op, total, reachable, covered))
    stray = tuple((c, w[0]) for c, w in named.items() if known.get(c, True) is not None)
    doubled = tuple((c, tuple(w)) for c, w in named.items() if len(w) > 1)
    return ProfileCoverage(
        profile=space.profile,
        ops=tuple(ops),
        missing=tuple(missing),
        doubled=doubled,
        stray=stray,
        unreachable=tuple((rule, removed[rule]) for rule in space.unreachable if removed[rule]),
        vectors=len(mine),
        explicit=sum(not v.row for v in mine),
        row_vectors=len(rows),
        variants=sum(bool(v.row and v.pins) for v in mine),
        rows_written=len({(v.path, v.line) for v in rows}),
    )


def check(paths: Sequence[str | Path]) -> Report:
    loaded = load_all(paths)
    vectors = list(loaded.vectors)
    return Report(
        tuple(profile_coverage(axes.SPACES[p], vectors) for p in Profile), tuple(str(e) for e in loaded.errors)
    )


# ---------------------------------------------------------------- rendering


def show(combo: Combination) -> str:
    return " ".join(f"{k}={v}" for k, v in combo)


def unreachable_lines(profile: Profile) -> list[str]:
    """Every unreachable combination of a profile's space with the rule that removes it."""
    space = axes.SPACES[profile]
    return [
        f"{profile.value}: {show(combo)}: {rule.name}: {rule.reason}"
        for op in space.ops
        for combo, rule in space.combinations(op)
        if rule is not None
    ]


def render(report: Report, limit: int = 20) -> str:
    out: list[str] = [f"load error: {e}" for e in report.errors]
    for p in report.profiles:
        pct = 100.0 * p.covered / p.reachable if p.reachable else 100.0
        out.append(
            f"profile {p.profile.value}: {p.covered}/{p.reachable} reachable combinations covered "
            f"({pct:.1f} %), {len(p.missing)} missing, {len(p.doubled)} doubly covered, "
            f"{len(p.stray)} outside the space"
        )
        out.append(
            f"  vectors: {p.vectors} ({p.explicit} explicit + {p.row_vectors} from {p.rows_written} "
            f"table rows + {p.variants} live-fixture variants); items per backend: {p.vectors}"
        )
        out.append(f"  {'operation':<26}{'space':>7}{'reachable':>11}{'covered':>9}")
        out += [f"  {o.op:<26}{o.space:>7}{o.reachable:>11}{o.covered:>9}" for o in p.ops]
        out.append("  unreachable (first rule that applies):")
        out += [f"    {n:>5}  {r.name}: {r.reason} [{r.kernel}]" for r, n in p.unreachable]
        out.append("  outside the decision space (explicit vectors only):")
        space = axes.SPACES[p.profile]
        out += [f"    {op}: {why}" for op, why in space.scenario_only.items()]
        for title, items in (
            ("missing", [show(c) for c in p.missing]),
            ("doubly covered", [f"{show(c)}: {', '.join(w)}" for c, w in p.doubled]),
            ("outside the space", [f"{show(c)}: {w}" for c, w in p.stray]),
        ):
            if items:
                out.append(f"  {title}:")
                out += [f"    {item}" for item in items[:limit]]
                out += [f"    ... and {len(items) - limit} more"] if len(items) > limit else []
    out.append("coverage: OK" if report.ok else "coverage: FAILED")
    return "\n".join(out)
