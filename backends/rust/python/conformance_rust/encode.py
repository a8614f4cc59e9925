"""The compact form the Rust model takes and returns: plain ints and
tuples. The codes must match `src/model.rs`. The backend passes steps this
way; the state it hands over as the vector's own `Mapping` objects (the
crate reads them, see plugin.py). State tuples (`state_args`) serve the
one-call `_mmu.run`, tools/export_vectors.py and the benchmarks."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from conformance.model import (
    AttrFilter, Decision, DisableQuirk, GmemFlag, GmemPunchHole, Kind, Level, Mapping, MemoryTypeChange,
    MemslotDelete, MemslotMove, MemslotSetFlags, MmRelease, MmuNotifierInvalidate, Operation, Profile, RangeFlag, Root,
    SetMemoryAttributes, Slot, State, UnmapGfnRange, Vm, VmDestroy, VmType, WarnSite, ZapAll, ZapAllFast,
    ZapGfnRange, ZapMemslot,
)

VmTuple = tuple[int, bool, bool, int, bool]
SlotTuple = tuple[int, int, int, int, int]
MappingTuple = tuple[int, int, int, int, int, bool]
StepTuple = tuple[int, tuple[int, ...]]

PROFILES = {Profile.TDX_V10: 0, Profile.MAINLINE: 1}
VM_TYPES = {VmType.DEFAULT: 0, VmType.SW_PROTECTED: 1, VmType.SEV: 2, VmType.SEV_ES: 3, VmType.SNP: 4,
            VmType.TDX: 5}
ROOTS = (Root.DIRECT, Root.MIRROR, Root.SHADOW)
ROOT_CODES = {root: code for code, root in enumerate(ROOTS)}
KINDS = (Kind.SHARED, Kind.PRIVATE)
KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}
DECISIONS = (Decision.NONE, Decision.SHARED, Decision.PRIVATE, Decision.BOTH)
WARN_BITS = {WarnSite.KVM_UNMAP_GFN_RANGE: 1, WarnSite.FILTER_TO_ROOT_TYPES: 2,
             WarnSite.TDP_MMU_ROOT_MATCH: 4, WarnSite.KVM_ZAP_GFN_RANGE: 8}

SLOT_PRIVATE, SLOT_LOG_DIRTY, SLOT_READONLY, SLOT_GMEM_MMAP, SLOT_GMEM_INIT_SHARED = 1, 2, 4, 8, 16
FLUSH_IN, RESTRICTED_MEM, SET_MEM_ATTR, HAS_ATTR, FILTER_SHARED, FILTER_PRIVATE = 1, 2, 4, 8, 16, 32
DEBUG_PANIC = 255


def vm_tuple(vm: Vm) -> VmTuple:
    return VM_TYPES[vm.type], vm.tdp_mmu, vm.rmaps, vm.gpaw, vm.slot_zap_all


def slot_tuple(slot: Slot) -> SlotTuple:
    flags = ((SLOT_PRIVATE if slot.private else 0) | (SLOT_LOG_DIRTY if slot.log_dirty else 0)
             | (SLOT_READONLY if slot.readonly else 0)
             | (SLOT_GMEM_MMAP if GmemFlag.MMAP in slot.gmem_flags else 0)
             | (SLOT_GMEM_INIT_SHARED if GmemFlag.INIT_SHARED in slot.gmem_flags else 0))
    return slot.id, slot.as_id, slot.base_gfn, slot.npages, flags


def mapping_tuple(m: Mapping) -> MappingTuple:
    return m.as_id, ROOT_CODES[m.root], m.gfn, int(m.level), KIND_CODES[m.kind], m.invalid


def state_args(state: State) -> tuple[VmTuple, list[SlotTuple], list[tuple[int, int]], list[MappingTuple]]:
    return (vm_tuple(state.vm), [slot_tuple(s) for s in state.slots], list(state.private_ranges),
            [mapping_tuple(m) for m in state.mappings])


def host_huge_args(state: State) -> list[tuple[int, int, int]]:
    """The vector's huge host page ranges with their level (the model adds
    those under huge leaves)."""
    return [(lo, hi, int(level)) for lo, hi, level in state.host_huge]


def _unmap(op: UnmapGfnRange) -> StepTuple:
    flags = ((FLUSH_IN if op.flush_in else 0)
             | (RESTRICTED_MEM if RangeFlag.RESTRICTED_MEM in op.range_flags else 0)
             | (SET_MEM_ATTR if RangeFlag.SET_MEM_ATTR in op.range_flags else 0)
             | (HAS_ATTR if op.attr is not None else 0)
             | (FILTER_SHARED if AttrFilter.SHARED in op.attr_filter else 0)
             | (FILTER_PRIVATE if AttrFilter.PRIVATE in op.attr_filter else 0))
    return 0, (op.slot, op.start, op.end, flags, op.attr or 0)


# Operation class -> (code, its arguments in order).
SIMPLE_OPS: dict[type, tuple[int, Callable[[Any], tuple[int, ...]]]] = {
    ZapGfnRange: (1, lambda o: (o.start, o.end)),
    ZapMemslot: (2, lambda o: (o.slot,)),
    ZapAllFast: (3, lambda o: ()),
    ZapAll: (4, lambda o: ()),
    MmuNotifierInvalidate: (5, lambda o: (o.as_id, o.start, o.end)),
    GmemPunchHole: (6, lambda o: (o.slot, o.start, o.end)),
    SetMemoryAttributes: (7, lambda o: (o.address, o.size, o.attributes, o.flags)),
    MemslotDelete: (8, lambda o: (o.slot,)),
    MemslotMove: (9, lambda o: (o.slot, o.new_base_gfn)),
    DisableQuirk: (10, lambda o: ()),
    MemoryTypeChange: (11, lambda o: (o.start, o.end)),
    MmRelease: (12, lambda o: ()),
    VmDestroy: (13, lambda o: ()),
    MemslotSetFlags: (14, lambda o: (o.slot, o.flags)),
}


def op_tuple(op: Operation) -> StepTuple:
    """One operation as (code, args)."""
    if isinstance(op, UnmapGfnRange):
        return _unmap(op)
    code, args = SIMPLE_OPS[type(op)]
    return code, args(op)


def steps_args(ops: Iterable[Operation]) -> list[StepTuple]:
    return [op_tuple(op) for op in ops]


# ---------------------------------------------------------------- results

LEVELS = {int(level): level for level in Level}


def mapping_from(t: MappingTuple) -> Mapping:
    as_id, root, gfn, level, kind, invalid = t
    return Mapping(as_id, ROOTS[root], gfn, LEVELS[level], KINDS[kind], invalid)


def decision_from(code: Optional[int]) -> Optional[Decision]:
    return None if code is None else DECISIONS[code]


def warns_from(bits: Optional[int]) -> Optional[frozenset[WarnSite]]:
    return None if bits is None else frozenset(site for site, bit in WARN_BITS.items() if bits & bit)
