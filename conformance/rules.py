"""The format's semantic rules, on model objects.

Each check takes the key path where a problem is to be reported and raises
RuleViolation; none sees TOML. Explicit vectors, decision-table rows and
fuzzed states all go through `check_state` and `check_step`, so a state is
acceptable in one exactly when it is in the others (docs/spec.md §1.1).
Every check over many leaves or slots sorts first: n log n, never n².
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import repeat

from . import axes, capabilities
from .errors import KeyPath, RuleViolation
from .model import (
    GFN_BITS,
    MAINLINE_ONLY_OPS,
    MEM_LOG_DIRTY_PAGES,
    MEMORY_ATTRIBUTE_PRIVATE,
    PROTECTED_STATE_VMS,
    VM_TYPES,
    GmemFlag,
    GmemPunchHole,
    Kind,
    Level,
    Mapping,
    MemoryTypeChange,
    MemslotDelete,
    MemslotMove,
    MemslotSetFlags,
    MmuNotifierInvalidate,
    Observables,
    Operation,
    Profile,
    RangeFlag,
    Root,
    SetMemoryAttributes,
    Slot,
    State,
    UnmapGfnRange,
    Vm,
    VmType,
    ZapGfnRange,
    op_name,
)
from .schema import GFN_LIMIT, fail, hexed

Run = tuple[Mapping, int]  # a leaf and how many consecutive leaves of its level it stands for


def span(start: int, end: int) -> str:
    return f"[{hexed(start)}, {hexed(end)})"


def profile_names(profiles: Iterable[Profile]) -> str:
    return ", ".join(sorted(p.value for p in profiles))


# ---------------------------------------------------------------- VM and slots


def check_vm(vm: Vm, profiles: frozenset[Profile], at: KeyPath) -> None:
    for profile in sorted(profiles):
        if vm.type not in VM_TYPES[profile]:
            allowed = ", ".join(t.value for t in VmType if t in VM_TYPES[profile])
            fail(
                at + ("type",), f"VM type {vm.type.value} does not exist in profile {profile.value}; allowed: {allowed}"
            )
    if vm.type is not VmType.TDX and vm.gpaw != 52:
        fail(at + ("gpaw",), "gpaw is only meaningful for TDX VMs")
    labels = {"vm": vm.type.value, "tdp_mmu": axes.bool_label(vm.tdp_mmu), "rmaps": axes.bool_label(vm.rmaps)}
    for profile in sorted(profiles):
        rule = axes.problem(profile, labels)
        if rule is not None:  # the same rules decide which table combinations exist
            fail(at + (rule.axes[-1],), f"cannot happen: {rule.reason} [{rule.kernel}]")
    if not vm.slot_zap_all and profiles != {Profile.MAINLINE}:
        fail(at + ("slot_zap_all",), 'slot_zap_all = false needs profiles = ["mainline"]')


def check_slot(slot: Slot, vm: Vm, profiles: frozenset[Profile], at: KeyPath) -> None:
    where = f"slot {slot.id} {span(slot.base_gfn, slot.end_gfn)}"
    if slot.as_id >= vm.address_spaces:
        fail(
            at + ("as_id",),
            f"as_id {slot.as_id} needs a VM without private memory; {vm.type.value} has one address space",
        )
    if slot.end_gfn > GFN_LIMIT:
        fail(at + ("npages",), f"{where} extends beyond the {GFN_BITS}-bit GFN space")
    if vm.mirror and slot.end_gfn > vm.shared_bit:
        fail(
            at + ("npages",), f"slot covers the TDX shared-bit alias: {where} reaches shared bit {hexed(vm.shared_bit)}"
        )
    if slot.private and slot.log_dirty:
        fail(at + ("flags",), "a private slot (GUEST_MEMFD/PRIVATE) cannot have LOG_DIRTY_PAGES")
    if slot.private and slot.readonly:
        fail(at + ("flags",), "a private slot (GUEST_MEMFD/PRIVATE) cannot be READONLY")
    if slot.readonly and vm.type in PROTECTED_STATE_VMS:
        fail(at + ("flags",), f"READONLY slots are not allowed in {vm.type.value} VMs (protected state)")
    if slot.gmem_flags and not slot.private:
        fail(at + ("gmem_flags",), "gmem_flags need a private slot (GUEST_MEMFD/PRIVATE)")
    if GmemFlag.INIT_SHARED in slot.gmem_flags and vm.private_mem:
        fail(at + ("gmem_flags",), f"INIT_SHARED is only for VMs without private memory, not {vm.type.value}")
    labels = {"vm": vm.type.value, "slot_private": axes.bool_label(slot.private)}
    for profile in sorted(profiles):  # the axes' slot rules (tdx-v10: only TDX accepts private slots)
        rule = axes.problem(profile, labels)
        if rule is not None:
            fail(at + ("flags",), f"cannot happen in {profile.value}: {rule.reason} [{rule.kernel}]")


def check_slot_set(slots: Sequence[Slot], at: Sequence[KeyPath]) -> None:
    """Slot ids are unique and slots of one address space do not overlap."""
    first: dict[int, int] = {}
    for i, slot in enumerate(slots):
        if slot.id in first:
            fail(at[i] + ("id",), f"duplicate slot id {slot.id}")
        first[slot.id] = i
    order = sorted(range(len(slots)), key=lambda i: (slots[i].as_id, slots[i].base_gfn, i))
    for prev, cur in itertools.pairwise(order):
        a, b = slots[prev], slots[cur]
        if a.as_id == b.as_id and b.base_gfn < a.end_gfn:
            later, earlier = (slots[max(prev, cur)], slots[min(prev, cur)])
            fail(
                at[max(prev, cur)] + ("base_gfn",),
                f"slot {later.id} {span(later.base_gfn, later.end_gfn)} overlaps slot {earlier.id} "
                f"{span(earlier.base_gfn, earlier.end_gfn)} in as_id {later.as_id}",
            )


# ---------------------------------------------------------------- memory attributes and host pages


def check_ranges(ranges: Sequence[tuple[int, int]], what: str, at: Sequence[KeyPath]) -> None:
    """Non-empty, non-overlapping [start, end) ranges."""
    for i, (start, end) in enumerate(ranges):
        if start >= end:
            fail(at[i], f"empty range {span(start, end)}: start must be < end")
    order = sorted(range(len(ranges)), key=lambda i: (ranges[i][0], i))
    for prev, cur in itertools.pairwise(order):
        if ranges[cur][0] < ranges[prev][1]:
            later, earlier = max(prev, cur), min(prev, cur)
            fail(at[later], f"{what} {span(*ranges[later][:2])} overlaps {span(*ranges[earlier][:2])}")


def check_private_ranges(ranges: Sequence[tuple[int, int]], vm: Vm, at: Sequence[KeyPath]) -> None:
    check_ranges(ranges, "private range", at)
    if ranges and not vm.private_mem:
        rule = axes.rule("attributes-need-private-mem")
        fail(at[0], f"cannot happen: {rule.reason} [{rule.kernel}]")


def check_host_huge(pages: Sequence[tuple[int, int, Level]], slots: Sequence[Slot], at: Sequence[KeyPath]) -> None:
    """Aligned to the page size, each page inside one slot of as_id 0, no overlaps."""
    check_ranges([(start, end) for start, end, _ in pages], "host_huge range", at)
    finder = SlotFinder(slots)
    for i, (start, end, level) in enumerate(pages):
        if start % level.pages or end % level.pages:
            fail(
                at[i],
                f"range {span(start, end)} is not aligned to its {level.label} host pages ({hexed(level.pages)} GFNs)",
            )
        for page in range(start, end, level.pages):
            if finder.holding(0, page, page + level.pages) is None:
                fail(
                    at[i],
                    f"host page {span(page, page + level.pages)} is not inside one slot of as_id 0: "
                    f"a host page backs slot memory",
                )


# ---------------------------------------------------------------- leaves


def check_mapping(m: Mapping, vm: Vm, profiles: frozenset[Profile], at: KeyPath) -> None:
    """Structural rules for one leaf (initial or expected)."""
    if m.as_id >= vm.address_spaces:
        fail(at + ("as_id",), f"as_id {m.as_id} does not exist: {vm.type.value} has one address space")
    _check_root(m, vm, profiles, at)
    if m.gfn % m.level.pages:
        fail(
            at + ("gfn",),
            f"misaligned: gfn {hexed(m.gfn)} is not a multiple of {hexed(m.level.pages)} ({m.level.label})",
        )
    if m.end > GFN_LIMIT:
        fail(at + ("gfn",), f"leaf {span(m.gfn, m.end)} extends beyond the {GFN_BITS}-bit GFN space")
    if m.root is Root.MIRROR and m.level is not Level.L4K:
        fail(at + ("level",), f"mirror mappings must be 4K, got {m.level.label}")
    if vm.mirror and m.root is Root.DIRECT and not m.gfn & vm.shared_bit:
        fail(at + ("gfn",), f"TDX direct-root gfn {hexed(m.gfn)} lacks the shared bit {hexed(vm.shared_bit)}")
    if vm.mirror and m.root is Root.MIRROR and m.gfn & vm.shared_bit:
        fail(at + ("gfn",), f"mirror gfn {hexed(m.gfn)} has the shared bit {hexed(vm.shared_bit)} set")
    forced = Kind.PRIVATE if m.root is Root.MIRROR else (Kind.SHARED if vm.mirror and m.root is Root.DIRECT else None)
    if forced is not None and m.kind is not forced:
        fail(
            at + ("kind",), f"a {m.root.value}-root leaf in a {vm.type.value} VM is {forced.value}, not {m.kind.value}"
        )
    if m.kind is Kind.PRIVATE and not vm.private_mem:
        rule = axes.rule("private-needs-private-mem")
        fail(at + ("kind",), f"cannot happen: {rule.reason} [{rule.kernel}]")


def _check_root(m: Mapping, vm: Vm, profiles: frozenset[Profile], at: KeyPath) -> None:
    if m.root is Root.MIRROR and not vm.mirror:
        fail(at + ("root",), f"mirror roots only exist in TDX VMs, not {vm.type.value}")
    if m.root is Root.DIRECT and not vm.tdp_mmu:
        fail(at + ("root",), "direct roots need tdp_mmu = true")
    if m.root is Root.SHADOW and not vm.rmaps:
        fail(at + ("root",), "shadow roots need rmaps = true")
    if m.invalid and m.root is Root.SHADOW:
        fail(at + ("invalid",), "invalid applies to TDP roots (direct, mirror) only")
    if m.invalid and m.root is Root.MIRROR and Profile.TDX_V10 in profiles:
        fail(at + ("invalid",), "tdx-v10 never has an invalid mirror root")


class LeafChecker:
    """check_mapping for many leaves of one VM. Apart from the GFN's
    alignment and end, a leaf's verdict depends only on its shape (address
    space, root, level, kind, invalid, which side of the shared bit), so
    each shape is checked in full once; a million leaves cost one pass."""

    def __init__(self, vm: Vm, profiles: frozenset[Profile]) -> None:
        self.vm, self.profiles = vm, profiles
        self._good: set[tuple[object, ...]] = set()

    def check(self, m: Mapping, at: KeyPath) -> None:
        shape = (m.as_id, m.root, m.level, m.kind, m.invalid, m.gfn & self.vm.shared_bit != 0)
        if shape in self._good and not m.gfn % m.level.pages and m.gfn + m.level.pages <= GFN_LIMIT:
            return
        check_mapping(m, self.vm, self.profiles, at)
        self._good.add(shape)


def check_run(
    first: Mapping, count: int, vm: Vm, profiles: frozenset[Profile], at: KeyPath, leaves: LeafChecker | None = None
) -> None:
    """A run of `count` leaves from `first`: the rules hold for every leaf,
    checked on its ends, which suffices when the run stays on one side of
    the TDX shared bit."""
    if leaves is not None:
        leaves.check(first, at)
    else:
        check_mapping(first, vm, profiles, at)
    if count == 1:
        return
    step = first.level.pages
    if first.gfn + count * step > GFN_LIMIT:
        fail(
            at + ("count",),
            f"{hexed(count)} {first.level.label} leaves from {hexed(first.gfn)} extend beyond "
            f"the {GFN_BITS}-bit GFN space",
        )
    last = replace(first, gfn=first.gfn + (count - 1) * step)
    try:
        check_mapping(last, vm, profiles, at)
    except RuleViolation as err:
        fail(at + ("count",), f"the run's last leaf ({last.describe()}): {err.message}")
    if vm.shared_bit and (first.gfn ^ last.gfn) >= vm.shared_bit:
        fail(
            at + ("count",),
            f"the run from {hexed(first.gfn)} to {hexed(last.gfn)} crosses the TDX shared bit {hexed(vm.shared_bit)}",
        )


def memslot_gfn(vm: Vm, m: Mapping) -> int:
    """The memslot GFN a leaf maps (a TDX direct-root GFN drops the shared bit)."""
    return m.gfn & ~vm.shared_bit


class SlotFinder:
    """The slot of an address space holding a GFN range, by binary search
    over slots sorted by base (slots of one address space do not overlap)."""

    def __init__(self, slots: Sequence[Slot]) -> None:
        self._by_as: dict[int, tuple[list[int], list[Slot]]] = {}
        for slot in sorted(slots, key=lambda s: (s.as_id, s.base_gfn)):
            bases, ordered = self._by_as.setdefault(slot.as_id, ([], []))
            bases.append(slot.base_gfn)
            ordered.append(slot)

    def holding(self, as_id: int, start: int, end: int) -> Slot | None:
        bases, ordered = self._by_as.get(as_id, ([], []))
        i = bisect.bisect_right(bases, start) - 1
        if i >= 0 and end <= ordered[i].end_gfn:
            return ordered[i]
        return None


def check_in_slots(runs: Sequence[Run], vm: Vm, slots: Sequence[Slot], at: Sequence[KeyPath]) -> None:
    """An initial leaf maps memory of exactly one slot of its address space
    (a huge page never straddles a slot boundary), and a private one a
    private-capable slot. A run that spans slots is checked leaf by leaf."""
    finder = SlotFinder(slots)
    for i, (m, count) in enumerate(runs):
        start = memslot_gfn(vm, m)
        slot = finder.holding(m.as_id, start, start + count * m.level.pages)
        if slot is None:
            for leaf in expand(m, count):
                _leaf_slot(finder, leaf, vm, at[i])
        else:
            _private_slot(m, slot, vm, at[i])


def _leaf_slot(finder: SlotFinder, m: Mapping, vm: Vm, at: KeyPath) -> None:
    start = memslot_gfn(vm, m)
    slot = finder.holding(m.as_id, start, start + m.level.pages)
    if slot is None:
        fail(
            at + ("gfn",),
            f"mapping outside any slot: {m.describe()} covers memslot gfns "
            f"{span(start, start + m.level.pages)}, not inside one slot of as_id {m.as_id}",
        )
    _private_slot(m, slot, vm, at)


def _private_slot(m: Mapping, slot: Slot, vm: Vm, at: KeyPath) -> None:
    if m.kind is Kind.PRIVATE and not slot.private:
        fail(
            at + ("kind",),
            f"a private leaf needs a private-capable slot (GUEST_MEMFD/PRIVATE); slot {slot.id} "
            f"is not [{axes.rule('private-needs-private-slot').kernel}]",
        )


def check_leaves(runs: Sequence[Run], at: Sequence[KeyPath]) -> None:
    """Leaves of one tree (as_id, root, invalid) do not overlap. Sorted per
    tree; an overlap is reported at whichever of the two comes later, and
    names the other."""
    trees: dict[tuple[int, Root, bool], list[int]] = {}
    for i, (m, _) in enumerate(runs):
        trees.setdefault((m.as_id, m.root, m.invalid), []).append(i)
    ends = [m.gfn + n * m.level.pages for m, n in runs]
    for indices in trees.values():
        indices.sort(key=lambda i: (runs[i][0].gfn, i))
        reach: int | None = None  # the run reaching furthest so far
        for i in indices:
            if reach is not None and runs[i][0].gfn < ends[reach]:
                later, earlier = max(i, reach), min(i, reach)
                fail(
                    at[later] + ("gfn",),
                    f"leaf {_run(runs[later])} overlaps {_run(runs[earlier])}",
                    at[earlier] + ("gfn",) if at[earlier] != at[later] else None,
                )
            if reach is None or ends[i] > ends[reach]:
                reach = i


def _run(run: Run) -> str:
    m, count = run
    return m.describe() + (f" (first of {hexed(count)})" if count > 1 else "")


def expand(first: Mapping, count: int) -> list[Mapping]:
    """The leaves of a run."""
    if count == 1:
        return [first]
    step = first.level.pages
    gfns = range(first.gfn, first.gfn + count * step, step)
    n = len(gfns)
    # map() over repeat(): the leaves are built at C speed (a split 1G page is 262,144 of them)
    columns = (repeat(first.as_id, n), repeat(first.root, n), gfns, repeat(first.level, n), repeat(first.kind, n))
    return list(map(Mapping, *columns, repeat(first.invalid, n)))


@functools.lru_cache(maxsize=64)
def run_leaves(first: Mapping, count: int) -> frozenset[Mapping]:
    """A run's leaves as a set, built once per process: a split huge page
    often appears in a vector's initial state and in its expectations."""
    return frozenset(expand(first, count))


def check_state(state: State, profiles: frozenset[Profile], at: KeyPath) -> None:
    """Every structural rule for a state built in code (decision-table
    rows, fuzzed cases); every problem is reported at `at`."""
    check_vm(state.vm, profiles, at)
    for slot in state.slots:
        check_slot(slot, state.vm, profiles, at)
    check_slot_set(state.slots, [at] * len(state.slots))
    check_private_ranges(state.private_ranges, state.vm, [at] * len(state.private_ranges))
    check_host_huge(state.host_huge, state.slots, [at] * len(state.host_huge))
    runs = [(m, 1) for m in sorted(state.mappings)]
    for m, _ in runs:
        check_mapping(m, state.vm, profiles, at)
    check_in_slots(runs, state.vm, state.slots, [at] * len(runs))
    check_leaves(runs, [at] * len(runs))


# ---------------------------------------------------------------- steps


def check_version_tag(tag: str, profiles: frozenset[Profile], at: KeyPath) -> None:
    """`since:` describes mainline kernels up to the profile's own release;
    `linux:` is what a backend declares, never what a vector requires."""
    if not capabilities.known(tag):
        fail(
            at,
            f"unknown capability tag {tag!r}; known: {', '.join(capabilities.TAGS)}, profile:*, layer:*, "
            f"vm:*, since:<major.minor>",
        )
    version = capabilities.version_tag(tag)
    if version is None:
        return
    family, release = version
    if family == "linux":
        fail(at, f"{tag!r} is what a backend declares (the kernel it behaves as); a vector requires since:<x.y>")
    if profiles != {Profile.MAINLINE}:
        fail(at, f'{tag!r} names a mainline kernel release; it needs profiles = ["mainline"]')
    if release > capabilities.MAINLINE_LINUX:
        profile_release = ".".join(map(str, capabilities.MAINLINE_LINUX))
        fail(at, f"{tag!r} is newer than the mainline profile's Linux {profile_release}")


def _slot_range(start: int, end: int, slot: Slot, at: KeyPath) -> None:
    problem = "start" if not slot.base_gfn <= start < end else ("end" if end > slot.end_gfn else None)
    if problem:
        fail(
            at + (problem,),
            f"range {span(start, end)} must satisfy base_gfn <= start < end <= end_gfn "
            f"of slot {slot.id} {span(slot.base_gfn, slot.end_gfn)}",
        )


def _nonempty(start: int, end: int, at: KeyPath) -> None:
    if start >= end:
        fail(at + ("end",), f"empty range {span(start, end)}: start must be < end")


def _below_alias(end: int, vm: Vm, profiles: frozenset[Profile], at: KeyPath) -> None:
    """mainline walks a TDX direct root from `start | bit` and stops by the
    unaliased end, so a range past the shared bit is not the OR of its ends;
    the spec leaves such ranges undefined (docs/spec.md section 7)."""
    if vm.mirror and Profile.MAINLINE in profiles and end > vm.shared_bit:
        fail(
            at + ("end",),
            f"range end {hexed(end)} passes the TDX shared bit {hexed(vm.shared_bit)}: "
            f"the mainline walk there is not specified",
        )


def _v10_attributes(op: SetMemoryAttributes, at: KeyPath) -> None:
    """tdx-v10 has only ENCRYPT_REG_REGION / UNREG_REGION: private or not, no flags."""
    if op.attributes not in (0, MEMORY_ATTRIBUTE_PRIVATE):
        fail(at + ("attributes",), 'tdx-v10 can only express attributes [] or ["PRIVATE"]')
    if op.flags:
        fail(at + ("flags",), "tdx-v10 can only express flags = 0")


def check_step(
    op: Operation, expect: Observables, vm: Vm, profiles: frozenset[Profile], slots: dict[int, Slot], at: KeyPath
) -> dict[int, Slot]:
    """Rules relating a step to the state before it; returns the slots after it."""
    if type(op) in MAINLINE_ONLY_OPS and profiles != {Profile.MAINLINE}:
        fail(at + ("op",), f"{op_name(op)} is mainline-only; this vector lists {profile_names(profiles)}")
    slot = None
    if hasattr(op, "slot"):
        slot = slots.get(op.slot)
        if slot is None:
            live = ", ".join(str(s) for s in sorted(slots)) or "none"
            fail(at + ("slot",), f"slot {op.slot} does not exist at this step (slots: {live})")
    if isinstance(op, UnmapGfnRange):
        assert slot is not None
        _slot_range(op.start, op.end, slot, at)
        if RangeFlag.SET_MEM_ATTR in op.range_flags and op.attr is None:
            fail(at + ("attr",), "attr is required with range_flags SET_MEM_ATTR")
    elif isinstance(op, GmemPunchHole):
        assert slot is not None
        if not slot.private:
            fail(at + ("slot",), f"gmem_punch_hole needs a private slot; slot {slot.id} is not")
        _slot_range(op.start, op.end, slot, at)
    if isinstance(op, (ZapGfnRange, MmuNotifierInvalidate, MemoryTypeChange)):
        _below_alias(op.end, vm, profiles, at)
    if isinstance(op, MmuNotifierInvalidate):
        if op.as_id >= vm.address_spaces:
            fail(at + ("as_id",), f"as_id {op.as_id} does not exist: {vm.type.value} has one address space")
        _nonempty(op.start, op.end, at)
    elif isinstance(op, MemoryTypeChange):
        _nonempty(op.start, op.end, at)
    elif isinstance(op, SetMemoryAttributes) and Profile.TDX_V10 in profiles:
        _v10_attributes(op, at)
    elif isinstance(op, MemslotDelete):
        return {k: v for k, v in slots.items() if k != op.slot}
    elif isinstance(op, MemslotMove) and not expect.errno:
        assert slot is not None
        return {**slots, op.slot: replace(slot, base_gfn=op.new_base_gfn)}  # later steps see the new range
    elif isinstance(op, MemslotSetFlags) and not expect.errno and slot is not None and flags_only(slot, op.flags):
        return {**slots, op.slot: replace(slot, log_dirty=bool(op.flags & MEM_LOG_DIRTY_PAGES))}
    return slots


def flags_only(slot: Slot, flags: int) -> bool:
    """A request that can only toggle dirty logging: every other bit as the slot has it."""
    return flags & ~MEM_LOG_DIRTY_PAGES == slot.flag_bits & ~MEM_LOG_DIRTY_PAGES


def derive_kind(vm: Vm, root: Root) -> Kind | None:
    """The kind a leaf must have given where it lives, if that settles it."""
    if root is Root.MIRROR:
        return Kind.PRIVATE
    if (vm.mirror and root is Root.DIRECT) or not vm.private_mem:
        return Kind.SHARED
    return None
