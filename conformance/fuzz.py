"""Differential fuzzing: random VMs, slots, leaves and operation sequences
(both layers, both profiles) run on several backends; where two backends
that can both see an observable disagree, Hypothesis shrinks the case and
it is written out as a TOML vector file for a person to review.

The written vector's expectations are the first backend's observation
(the reference, by default), marked as such: a proposal, not a verdict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from . import axes, capabilities
from .contract import Backend
from .dump import suite_toml
from .errors import RuleViolation
from .model import (
    MEM_LOG_DIRTY_PAGES,
    MEM_READONLY,
    MEMORY_ATTRIBUTE_PRIVATE,
    PAGE_SIZE,
    V10_ATTR_PRIVATE,
    V10_ATTR_SHARED,
    VM_TYPES,
    AttrFilter,
    DisableQuirk,
    Flag,
    GmemPunchHole,
    Kind,
    Level,
    Mapping,
    MemoryTypeChange,
    MemslotDelete,
    MemslotMove,
    MemslotSetFlags,
    MmuNotifierInvalidate,
    Observable,
    Observables,
    Observation,
    Operation,
    Profile,
    Quirk,
    RangeFlag,
    Root,
    SetMemoryAttributes,
    Slot,
    State,
    Step,
    UnmapGfnRange,
    Vector,
    Vm,
    VmDestroy,
    VmType,
    ZapAll,
    ZapAllFast,
    ZapGfnRange,
    ZapMemslot,
)
from .rules import check_state, check_step
from .timeout import deadline

SLOT_STRIDE = 0x1000  # slot i lives at i * stride (+ a 2M-aligned offset): no overlaps, room to move
FOUND_FLAG = Flag(
    "fuzz-found",
    "Found by differential fuzzing: two backends disagreed here",
    "edge-case",
    ("kvm_unmap_gfn_range",),
    (),
)
_NOWHERE: tuple[str, ...] = ()  # fuzzed states have no file: rules report at the root


class Rejected(Exception):
    """A drawn case the loader's rules refuse; the strategy draws again."""


# ---------------------------------------------------------------- strategies


def _vm(draw: Any, profile: Profile) -> Vm:
    vm_type = draw(st.sampled_from(sorted(VM_TYPES[profile], key=lambda t: t.value)))
    pairs = [
        (t, r)
        for t, r in ((True, False), (True, True), (False, True))
        if axes.problem(profile, {"vm": vm_type.value, "tdp_mmu": axes.bool_label(t), "rmaps": axes.bool_label(r)})
        is None
    ]
    tdp, rmaps = draw(st.sampled_from(pairs))
    gpaw = draw(st.sampled_from((48, 52))) if vm_type is VmType.TDX else 52
    quirk = draw(st.booleans()) if profile is Profile.MAINLINE else True
    return Vm(vm_type, tdp, rmaps, gpaw, quirk)


def _slots(draw: Any, profile: Profile, vm: Vm) -> tuple[Slot, ...]:
    can_be_private = vm.mirror if profile is Profile.TDX_V10 else vm.private_mem
    slots = []
    for number in range(draw(st.integers(1, 3))):
        as_id = draw(st.integers(0, vm.address_spaces - 1))
        base = number * SLOT_STRIDE + draw(st.sampled_from((0, 0x200)))
        npages = draw(st.sampled_from((0x200, 0x400, 0x600)))
        private = can_be_private and draw(st.booleans())
        log_dirty = profile is Profile.MAINLINE and not private and draw(st.booleans())
        slots.append(Slot(number + 1, base, npages, as_id, private=private, log_dirty=log_dirty))
    return tuple(slots)


def _leaf(draw: Any, vm: Vm, slot: Slot) -> Mapping:
    roots = ([Root.DIRECT] if vm.tdp_mmu else []) + ([Root.SHADOW] if vm.rmaps else [])
    roots += [Root.MIRROR] if vm.mirror and slot.private else []
    root = draw(st.sampled_from(roots))
    level = Level.L4K if root is Root.MIRROR else draw(st.sampled_from((Level.L4K, Level.L2M)))
    gfn = slot.base_gfn + draw(st.integers(0, slot.npages // level.pages - 1)) * level.pages
    if root is Root.MIRROR:
        kind = Kind.PRIVATE
    elif vm.mirror or not (vm.private_mem and slot.private):
        kind = Kind.SHARED
    else:
        kind = draw(st.sampled_from((Kind.SHARED, Kind.PRIVATE)))
    if vm.mirror and root is Root.DIRECT:
        gfn |= vm.shared_bit
    return Mapping(slot.as_id, root, gfn, level, kind, invalid=False)


def _span(draw: Any, lo: int, hi: int) -> tuple[int, int]:
    start = draw(st.integers(lo, hi - 1))
    return start, draw(st.integers(start + 1, hi))


def _op(draw: Any, profile: Profile, vm: Vm, slots: dict[int, Slot]) -> Operation:
    live = sorted(slots.values(), key=lambda s: s.id)
    top = max((s.end_gfn for s in live), default=SLOT_STRIDE) + 0x200
    private = [s for s in live if s.private]
    kinds = [
        "zap_gfn_range",
        "zap_all_fast",
        "zap_all",
        "mmu_notifier",
        "set_attributes",
        "memory_type",
        "vm_destroy",
    ] + (["unmap", "zap_memslot", "delete", "move"] if live else [])
    kinds += ["punch_hole"] if private else []
    kinds += ["disable_quirk"] + (["set_flags"] if live else []) if profile is Profile.MAINLINE else []
    kind = draw(st.sampled_from(kinds))
    if kind == "set_flags":
        slot = draw(st.sampled_from(live))
        return MemslotSetFlags(
            slot.id, draw(st.sampled_from((slot.flag_bits ^ MEM_LOG_DIRTY_PAGES, slot.flag_bits, MEM_READONLY, 8)))
        )
    if kind in ("unmap", "zap_memslot", "delete", "move", "punch_hole"):
        slot = draw(st.sampled_from(private if kind == "punch_hole" else live))
        start, end = _span(draw, slot.base_gfn, slot.end_gfn)
        if kind == "unmap":
            return _unmap(draw, profile, slot, start, end)
        makers: dict[str, Callable[[], Operation]] = {
            "zap_memslot": lambda: ZapMemslot(slot.id),
            "delete": lambda: MemslotDelete(slot.id),
            "punch_hole": lambda: GmemPunchHole(slot.id, start, end),
            "move": lambda: MemslotMove(slot.id, draw(st.integers(0, 8)) * 0x800),
        }
        return makers[kind]()
    start, end = _span(draw, 0, top)
    if kind == "set_attributes":
        attributes = draw(st.sampled_from((0, MEMORY_ATTRIBUTE_PRIVATE)))
        return SetMemoryAttributes(start * PAGE_SIZE, (end - start) * PAGE_SIZE, attributes)
    others: dict[str, Callable[[], Operation]] = {
        "zap_gfn_range": lambda: ZapGfnRange(start, end),
        "zap_all_fast": ZapAllFast,
        "zap_all": ZapAll,
        "mmu_notifier": lambda: MmuNotifierInvalidate(draw(st.integers(0, vm.address_spaces - 1)), start, end),
        "memory_type": lambda: MemoryTypeChange(start, end),
        "vm_destroy": VmDestroy,
        "disable_quirk": lambda: DisableQuirk(Quirk.SLOT_ZAP_ALL),
    }
    return others[kind]()


def _unmap(draw: Any, profile: Profile, slot: Slot, start: int, end: int) -> UnmapGfnRange:
    flush_in = draw(st.booleans())
    if profile is Profile.MAINLINE:
        return UnmapGfnRange(
            slot.id, start, end, flush_in, attr_filter=frozenset(draw(st.sets(st.sampled_from(tuple(AttrFilter)))))
        )
    flags = frozenset(draw(st.sets(st.sampled_from(tuple(RangeFlag)))))
    attr = draw(st.sampled_from((V10_ATTR_SHARED, V10_ATTR_PRIVATE, 0, 7))) if RangeFlag.SET_MEM_ATTR in flags else None
    return UnmapGfnRange(slot.id, start, end, flush_in, range_flags=flags, attr=attr)


@st.composite
def vectors(draw: Any, profiles: Sequence[Profile] = tuple(Profile)) -> Vector:
    """A vector the loader would accept, without expectations."""
    profile = draw(st.sampled_from(sorted(profiles)))
    vm = _vm(draw, profile)
    slots = _slots(draw, profile, vm)
    leaves: list[Mapping] = []
    for slot in slots:
        for _ in range(draw(st.integers(0, 4))):
            leaf = _leaf(draw, vm, slot)
            if not any(
                (o.as_id, o.root) == (leaf.as_id, leaf.root) and o.gfn < leaf.end and leaf.gfn < o.end for o in leaves
            ):
                leaves.append(leaf)
    private_ranges: tuple[tuple[int, int], ...] = ()
    if vm.private_mem and draw(st.booleans()):
        private_ranges = tuple(_span(draw, s.base_gfn, s.end_gfn) for s in slots if s.private)[:1]
    live = {s.id: s for s in slots}
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        op = _op(draw, profile, vm, live)
        try:
            live = check_step(op, Observables(), vm, frozenset({profile}), live, _NOWHERE)
        except RuleViolation:
            continue
        steps.append(Step(op, Observables()))
    state = State(vm, slots, private_ranges, frozenset(leaves))
    try:
        _validate(state, profile, bool(steps))
    except (RuleViolation, Rejected):
        assume(False)
    ident = hashlib.sha256(repr((profile, state, steps)).encode()).hexdigest()[:12]
    return Vector(
        f"fuzz::case-{ident}",
        "a case drawn by the differential fuzzer",
        frozenset({profile}),
        capabilities.derive(vm, slots, leaves, (s.op for s in steps), state.private_ranges, state.host_huge),
        (FOUND_FLAG,),
        state,
        tuple(steps),
    )


def _validate(state: State, profile: Profile, has_steps: bool) -> None:
    if not has_steps:
        raise Rejected("no step survived the step rules")
    check_state(state, frozenset({profile}), _NOWHERE)


# ---------------------------------------------------------------- comparing backends


@dataclass(frozen=True)
class Finding:
    vector: Vector
    profile: Profile
    observations: tuple[tuple[str, Observation], ...]
    differences: tuple[str, ...]


def observe(backends: Sequence[Backend], vector: Vector, timeout: float) -> list[tuple[str, Observation]]:
    profile = next(iter(vector.profiles))
    seen = []
    for backend in backends:
        if backend.info.unmet(vector.requires | {f"profile:{profile.value}"}):
            continue
        try:
            with deadline(timeout):
                seen.append((backend.info.name, backend.run(vector, profile)))
        except Exception as exc:  # a crash is a disagreement with everyone who did not crash
            seen.append((backend.info.name, Observation(steps=(), notes=(f"{type(exc).__name__}: {exc}",))))
    return seen


def differences(seen: Sequence[tuple[str, Observation]], backends: Sequence[Backend]) -> list[str]:
    """Where the first observation and any other disagree on an observable both can see."""
    if len(seen) < 2:
        return []
    visible = {b.info.name: b.info.observables for b in backends}
    (first, base), out = seen[0], []
    for name, other in seen[1:]:
        if len(other.steps) != len(base.steps):
            out.append(
                f"{first} returned {len(base.steps)} steps ({'; '.join(base.notes)}), "
                f"{name} {len(other.steps)} ({'; '.join(other.notes)})"
            )
            continue
        for number, (a, b) in enumerate(zip(base.steps, other.steps), start=1):
            for what in Observable:
                mine, theirs = getattr(a, what.value), getattr(b, what.value)
                both = what in visible[first] and what in visible[name]
                if both and mine is not None and theirs is not None and mine != theirs:
                    out.append(f"step {number} {what.value}: {first} {_show(mine)} vs {name} {_show(theirs)}")
    return out


def _show(value: object) -> str:
    if isinstance(value, frozenset):
        return "{" + ", ".join(sorted(_show(v) for v in value)) + "}"
    if isinstance(value, Mapping):
        return value.describe()
    return str(getattr(value, "value", value))


class _Disagreement(Exception):
    pass


def search(
    backends: Sequence[Backend],
    profiles: Sequence[Profile],
    examples: int,
    seed: int | None = None,
    timeout: float = 10.0,
) -> Finding | None:
    """Run up to `examples` cases; return the shrunk first disagreement, if any."""
    found: list[Finding] = []

    @settings(
        max_examples=examples, deadline=None, database=None, print_blob=False, suppress_health_check=list(HealthCheck)
    )
    @given(vectors(profiles))
    def case(vector: Vector) -> None:
        seen = observe(backends, vector, timeout)
        diff = differences(seen, backends)
        if diff:
            found.append(Finding(vector, next(iter(vector.profiles)), tuple(seen), tuple(diff)))
            raise _Disagreement("; ".join(diff))

    if seed is not None:
        case = hypothesis_seed(seed)(case)
    try:
        case()
    except _Disagreement:
        return found[-1]  # Hypothesis replays the minimal failing case last
    return None


def write_finding(finding: Finding, directory: Path, seed: int | None) -> Path:
    """A ready suite file: expectations are the first backend's observation."""
    (proposer, observation), *_ = finding.observations
    steps = tuple(replace(step, expect=seen) for step, seen in zip(finding.vector.steps, observation.steps))
    ident = finding.vector.id.split("-")[-1]
    vector = replace(
        finding.vector,
        steps=steps,
        id=f"fuzz::{ident}",
        description=f"fuzz-found disagreement between {', '.join(n for n, _ in finding.observations)}",
    )
    provenance = (
        f"found {date.today().isoformat()} by `python -m conformance fuzz` (seed {seed})",
        f"expectations are {proposer}'s observation: review them against docs/spec.md before adding",
        *(f"  {line}" for line in finding.differences),
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"fuzz-{ident}.toml"
    path.write_text(
        suite_toml(
            "differential fuzzing finding (review before adding to suites/)",
            [(vector, f"case-{ident}", provenance)],
            flags=(FOUND_FLAG,),
        )
    )
    return path
