"""Profile `mainline` (Linux 6.18): one function per rule of docs/spec.md §5.

Mainline has no per-operation private/shared switch: the caller sets an
attribute filter and the TDP MMU turns it into root types.
"""
from __future__ import annotations

from dataclasses import replace
from errno import EINVAL

from conformance.model import (
    MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, AttrFilter, Decision, DisableQuirk, GmemFlag, GmemPunchHole,
    MemoryTypeChange, MmRelease, MmuNotifierInvalidate, Root,
    SetMemoryAttributes, Slot, UnmapGfnRange, VmDestroy, VmType, WarnSite,
)

from .calls import memslot_handlers, zap_handlers
from .mmu import Mmu, Outcome, RootKey

BOTH_FILTERS = frozenset({AttrFilter.PRIVATE, AttrFilter.SHARED})


def filter_to_root_types(mmu: Mmu, attr_filter: frozenset[AttrFilter]) -> frozenset[Root]:
    """kvm_gfn_range_filter_to_root_types: without mirrored TDP the filter is
    ignored; on TDX PRIVATE selects mirror roots and SHARED direct roots."""
    if not mmu.vm.mirror:
        return frozenset({Root.DIRECT})
    types = frozenset({Root.MIRROR} if AttrFilter.PRIVATE in attr_filter else set()) | frozenset(
        {Root.DIRECT} if AttrFilter.SHARED in attr_filter else set())
    if not types:
        mmu.warn(WarnSite.FILTER_TO_ROOT_TYPES)
    return types


def tdp_mmu_zap_leafs(mmu: Mmu, key: RootKey, start: int, end: int, flush: bool) -> bool:
    """tdp_mmu_zap_leafs: a zap in an invalid root needs no TLB flush."""
    zapped = mmu.zap_leafs(key, start, end)
    return flush or (zapped and not key.invalid)


def tdp_mmu_unmap_gfn_range(mmu: Mmu, slot: Slot, start: int, end: int,
                            types: frozenset[Root], flush: bool) -> bool:
    """kvm_tdp_mmu_unmap_gfn_range: valid and invalid roots of the selected
    types, in the slot's address space only. tdp_mmu_root_match WARNs on
    every root when the types name neither direct nor mirror."""
    if not types and mmu.vm.tdp_mmu:
        mmu.warn(WarnSite.TDP_MMU_ROOT_MATCH)
    for key in list(mmu.tdp_roots(slot.as_id, types, invalid=True)):
        flush = tdp_mmu_zap_leafs(mmu, key, start, end, flush)
    return flush


def unmap_gfn_range(mmu: Mmu, slot: Slot, start: int, end: int,
                    attr_filter: frozenset[AttrFilter], flush_in: bool = False) -> tuple[bool, Decision]:
    """kvm_unmap_gfn_range: rmap step (filter ignored), then the TDP MMU step
    receiving the rmap result OR the caller's pending flush. No early return."""
    flush = mmu.zap_rmaps(slot, start, end) or flush_in
    if not mmu.vm.tdp_mmu:
        return flush, Decision.BOTH
    types = filter_to_root_types(mmu, attr_filter)
    return tdp_mmu_unmap_gfn_range(mmu, slot, start, end, types, flush), mmu.kinds_in(types)


def zap_gfn_range(mmu: Mmu, start: int, end: int) -> Decision:
    """kvm_zap_gfn_range: rmaps of every overlapping slot, every *valid* TDP
    root of every address space (no filter), then its own ranged flush."""
    if end <= start:
        mmu.warn(WarnSite.KVM_ZAP_GFN_RANGE)
        return Decision.NONE
    flush = any([mmu.zap_rmaps(s, start, end) for s in mmu.slots_overlapping(start, end)])
    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=False)):
        flush = tdp_mmu_zap_leafs(mmu, key, start, end, flush)
    if flush:
        mmu.flush_remote_tlbs()
    return mmu.kinds_in((Root.DIRECT, Root.MIRROR)) if mmu.vm.tdp_mmu else Decision.BOTH


def zap_memslot(mmu: Mmu, slot: Slot) -> Decision:
    """kvm_mmu_zap_memslot: the whole slot, filter PRIVATE|SHARED, then
    kvm_mmu_zap_memslot_pages_and_flush flushes if anything went."""
    flush, decision = unmap_gfn_range(mmu, slot, slot.base_gfn, slot.end_gfn, BOTH_FILTERS)
    if flush:
        mmu.flush_remote_tlbs()
    return decision


def zap_all_fast(mmu: Mmu) -> Decision:
    """kvm_mmu_zap_all_fast: invalidate valid *direct* roots only (external
    TDX page tables cannot be fast-zapped) and zap them whole without a TLB
    flush; obsolete shadow pages are zapped and their commit flushes."""
    if mmu.zap_all_shadow():
        mmu.flush_remote_tlbs()
    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=False)):
        mmu.zap_root(key)
    return mmu.kinds_in((Root.DIRECT,)) if mmu.vm.tdp_mmu else Decision.BOTH


def zap_all(mmu: Mmu) -> Decision:
    """kvm_mmu_zap_all (kvm_arch_flush_shadow_all): every shadow page, then
    kvm_tdp_mmu_zap_all over DIRECT|INVALID roots; valid mirror roots stay
    until the VM is destroyed."""
    if mmu.zap_all_shadow():
        mmu.flush_remote_tlbs()
    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=True)):
        mmu.zap_root(key)
    return mmu.kinds_in((Root.DIRECT,)) if mmu.vm.tdp_mmu else Decision.BOTH


def uninit_tdp_mmu(mmu: Mmu) -> None:
    """kvm_mmu_uninit_tdp_mmu: invalidate all valid roots, mirror included,
    and zap them synchronously."""
    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=True)):
        mmu.zap_root(key)


# ---------------------------------------------------------------- call layer

def call_unmap_gfn_range(mmu: Mmu, op: UnmapGfnRange) -> Outcome:
    flush, decision = unmap_gfn_range(mmu, mmu.slots[op.slot], op.start, op.end, op.attr_filter, op.flush_in)
    return Outcome(flush=flush, decision=decision)


# ---------------------------------------------------------------- event layer

def on_mmu_notifier_invalidate(mmu: Mmu, op: MmuNotifierInvalidate) -> Outcome:
    """__kvm_handle_hva_range: every slot of the address space in range,
    filter SHARED (host userspace backs only shared memory), one flush."""
    flush = False
    for slot in mmu.slots_overlapping(op.start, op.end, op.as_id):
        lo, hi = max(op.start, slot.base_gfn), min(op.end, slot.end_gfn)
        flush |= unmap_gfn_range(mmu, slot, lo, hi, frozenset({AttrFilter.SHARED}))[0]
    if flush:
        mmu.flush_remote_tlbs()
    return Outcome()


def gmem_invalidate_filter(slot: Slot) -> frozenset[AttrFilter]:
    """kvm_gmem_get_invalidate_filter: SHARED for INIT_SHARED files, else PRIVATE."""
    shared = GmemFlag.INIT_SHARED in slot.gmem_flags
    return frozenset({AttrFilter.SHARED if shared else AttrFilter.PRIVATE})


def on_gmem_punch_hole(mmu: Mmu, op: GmemPunchHole) -> Outcome:
    """kvm_gmem_invalidate_begin: the bound slot's range, one flush at the end."""
    slot = mmu.slots[op.slot]
    flush, _ = unmap_gfn_range(mmu, slot, op.start, op.end, gmem_invalidate_filter(slot))
    if flush:
        mmu.flush_remote_tlbs()
    return Outcome()


def set_memory_attributes_errno(mmu: Mmu, op: SetMemoryAttributes) -> int:
    """kvm_vm_ioctl_set_mem_attributes: flags, unsupported bits, empty or
    overflowing range, alignment; every failure is -EINVAL, nothing zapped."""
    supported = MEMORY_ATTRIBUTE_PRIVATE if mmu.vm.private_mem else 0
    bad = (op.flags != 0 or op.attributes & ~supported or op.size == 0 or op.address + op.size >= 1 << 64
           or op.address % PAGE_SIZE or op.size % PAGE_SIZE)
    return EINVAL if bad else 0


def on_set_memory_attributes(mmu: Mmu, op: SetMemoryAttributes) -> Outcome:
    """kvm_vm_set_mem_attributes: no-op when the range already has the
    attributes; else kvm_arch_pre_set_memory_attributes on every overlapping
    slot ("unmap the old attribute page"), one flush, then store."""
    errno = set_memory_attributes_errno(mmu, op)
    if errno:
        return Outcome(errno=errno)
    start, end = op.address // PAGE_SIZE, (op.address + op.size) // PAGE_SIZE
    private = bool(op.attributes & MEMORY_ATTRIBUTE_PRIVATE)
    if (mmu.range_is_private if private else mmu.range_is_shared)(start, end):
        return Outcome()
    old = frozenset({AttrFilter.SHARED if private else AttrFilter.PRIVATE})
    flush = False
    for slot in mmu.slots_overlapping(start, end):
        flush |= unmap_gfn_range(mmu, slot, max(start, slot.base_gfn), min(end, slot.end_gfn), old)[0]
    if flush:
        mmu.flush_remote_tlbs()
    mmu.set_private(start, end, private)
    return Outcome()


def flush_shadow_memslot(mmu: Mmu, slot: Slot) -> None:
    """kvm_arch_flush_shadow_memslot: with KVM_X86_QUIRK_SLOT_ZAP_ALL on a
    DEFAULT VM every direct root goes (kvm_memslot_flush_zap_all); any other
    VM type, or the quirk off, zaps just the slot."""
    if mmu.vm.type is VmType.DEFAULT and mmu.vm.slot_zap_all:
        zap_all_fast(mmu)
    else:
        zap_memslot(mmu, slot)


def on_disable_quirk(mmu: Mmu, op: DisableQuirk) -> Outcome:
    """KVM_CAP_DISABLE_QUIRKS2: changes policy, zaps nothing."""
    mmu.vm = replace(mmu.vm, slot_zap_all=False)
    return Outcome()


def on_memory_type_change(mmu: Mmu, op: MemoryTypeChange) -> Outcome:
    """MTRR virtualisation and the CR0.CD zap were removed in v6.11: nothing."""
    return Outcome()


def on_mm_release(mmu: Mmu, op: MmRelease) -> Outcome:
    zap_all(mmu)
    return Outcome()


def on_vm_destroy(mmu: Mmu, op: VmDestroy) -> Outcome:
    """kvm_destroy_vm: the notifier release (zap_all), then uninit takes the rest."""
    zap_all(mmu)
    uninit_tdp_mmu(mmu)
    return Outcome()


HANDLERS = {
    **zap_handlers(zap_gfn_range, zap_memslot, zap_all_fast, zap_all),
    UnmapGfnRange: call_unmap_gfn_range,
    MmuNotifierInvalidate: on_mmu_notifier_invalidate,
    GmemPunchHole: on_gmem_punch_hole,
    SetMemoryAttributes: on_set_memory_attributes,
    **memslot_handlers(flush_shadow_memslot, alias_after_zap=True),
    DisableQuirk: on_disable_quirk,
    MemoryTypeChange: on_memory_type_change,
    MmRelease: on_mm_release,
    VmDestroy: on_vm_destroy,
}
