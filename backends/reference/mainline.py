"""Profile `mainline` (Linux 6.18): one function per rule of docs/spec.md §5.

Mainline has no per-operation private/shared switch: the caller sets an
attribute filter and the TDP MMU turns it into root types.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from errno import EINVAL

from conformance.model import (
    MEM_GUEST_MEMFD, MEM_LOG_DIRTY_PAGES, MEM_READONLY, MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, PROTECTED_STATE_VMS,
    AttrFilter, Decision, DisableQuirk, GmemFlag, GmemPunchHole, Level, Mapping, MemoryTypeChange, MemslotSetFlags,
    MmRelease, MmuNotifierInvalidate, Root, SetMemoryAttributes, Slot, UnmapGfnRange, VmDestroy, VmType, WarnSite,
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


# ---------------------------------------------------------------- flags-only memslot changes (§5.7)

def memslot_flags_errno(mmu: Mmu, slot: Slot, flags: int) -> int:
    """check_memory_region_flags, then kvm_set_memory_region's checks of an
    existing slot; every refusal is -EINVAL and zaps nothing. Valid bits are
    LOG_DIRTY_PAGES, GUEST_MEMFD, and READONLY unless the VM has protected
    state; GUEST_MEMFD excludes LOG_DIRTY_PAGES and READONLY. A request
    carrying GUEST_MEMFD is refused outright (guest_memfd slots are
    immutable), and READONLY or GUEST_MEMFD may not change."""
    valid = MEM_LOG_DIRTY_PAGES | MEM_GUEST_MEMFD
    if flags & MEM_GUEST_MEMFD:
        valid &= ~MEM_LOG_DIRTY_PAGES
    elif mmu.vm.type not in PROTECTED_STATE_VMS:
        valid |= MEM_READONLY
    refused = (flags & ~valid or flags & MEM_GUEST_MEMFD
               or (flags ^ slot.flag_bits) & (MEM_READONLY | MEM_GUEST_MEMFD))
    return EINVAL if refused else 0


def max_mapping_level(mmu: Mmu, slot: Slot, gfn: int) -> Level:
    """kvm_mmu_max_mapping_level for a memslot GFN: the largest level whose
    block lies inside the slot (lpage_info: slot edges; the host address is
    taken to be congruent to the GFN) and, in a VM with private memory, has
    only shared GFNs (mixed or private attributes disallow it); capped by
    the host page backing the GFN."""
    for level in (Level.L1G, Level.L2M):
        block = gfn - gfn % level.pages
        inside = slot.base_gfn <= block and block + level.pages <= slot.end_gfn
        if inside and (not mmu.vm.private_mem or mmu.range_is_shared(block, block + level.pages)):
            return min(level, mmu.host_level(slot.as_id, gfn))
    return Level.L4K


def try_split_huge_pages(mmu: Mmu, slot: Slot) -> None:
    """kvm_mmu_slot_try_split_huge_pages (eager_page_split=Y): only with the
    TDP MMU; every huge leaf of the slot in the valid roots of its address
    space, and the nested shadow MMU's huge leaves, become 4K leaves. The
    shadow ones now sit in direct shadow pages."""
    if not mmu.vm.tdp_mmu:
        return
    if mmu.vm.rmaps:
        mmu.direct_shadow |= mmu.split_to_4k(RootKey(slot.as_id, Root.SHADOW, False), slot.base_gfn, slot.end_gfn)
    for key in list(mmu.tdp_roots(slot.as_id, (Root.DIRECT, Root.MIRROR), invalid=False)):
        mmu.split_to_4k(key, slot.base_gfn, slot.end_gfn)


def enable_dirty_logging(mmu: Mmu, slot: Slot) -> None:
    """kvm_mmu_slot_apply_flags, dirty logging turned on: eager split, then
    write protection (no leaf goes), then an unconditional
    kvm_flush_remote_tlbs_memslot."""
    try_split_huge_pages(mmu, slot)
    mmu.flush_remote_tlbs()


def rmap_zap_collapsible_sptes(mmu: Mmu, slot: Slot) -> bool:
    """kvm_rmap_zap_collapsible_sptes: a shadow leaf of the slot goes when
    its shadow page is direct and a larger mapping of the page's GFN is
    allowed (sp->role.level < kvm_mmu_max_mapping_level(sp->gfn))."""
    if not mmu.vm.rmaps:
        return False
    key = RootKey(slot.as_id, Root.SHADOW, False)
    present = mmu.leaves.get(key, set())
    doomed = set()
    for m in present & mmu.direct_shadow:
        page = Level(m.level + 1)
        table_gfn = m.gfn - m.gfn % page.pages
        if slot.base_gfn <= table_gfn < slot.end_gfn and max_mapping_level(mmu, slot, table_gfn) >= page:
            doomed.add(m)
    present -= doomed
    return bool(doomed)


def tdp_recover_huge_pages(mmu: Mmu, key: RootKey, slot: Slot) -> bool:
    """recover_huge_pages_range (since 6.13): top down, a 1G then a 2M block
    whose start lies in the slot, that holds smaller leaves and may be
    mapped at its level, gets one huge leaf in place of them, built from its
    lowest leaf (tdp_mmu_make_huge_spte). Returns whether any was made."""
    below_1g: dict[int, list[Mapping]] = defaultdict(list)
    for m in mmu.leaves_in(key, slot.base_gfn, slot.end_gfn):
        if m.level < Level.L1G:
            below_1g[m.gfn - m.gfn % Level.L1G.pages].append(m)
    recovered = False
    for block, inside in sorted(below_1g.items()):
        if recoverable(mmu, key, slot, block, Level.L1G):
            mmu.collapse(key, inside, block, Level.L1G)
            recovered = True
            continue
        small: dict[int, list[Mapping]] = defaultdict(list)
        for m in inside:
            if m.level is Level.L4K:
                small[m.gfn - m.gfn % Level.L2M.pages].append(m)
        for sub, leaves in sorted(small.items()):
            if recoverable(mmu, key, slot, sub, Level.L2M):
                mmu.collapse(key, leaves, sub, Level.L2M)
                recovered = True
    return recovered


def recoverable(mmu: Mmu, key: RootKey, slot: Slot, block: int, level: Level) -> bool:
    """The block's start (a tree index) lies in the slot and
    kvm_mmu_max_mapping_level allows its level there."""
    gfn = block & ~mmu.vm.shared_bit if key.root is Root.DIRECT else block
    return slot.base_gfn <= gfn < slot.end_gfn and max_mapping_level(mmu, slot, gfn) >= level


def recover_huge_pages(mmu: Mmu, slot: Slot) -> None:
    """kvm_mmu_recover_huge_pages: the shadow MMU's collapsible leaves are
    zapped, the TDP MMU's valid roots of the slot's address space recover
    huge leaves in place; each part flushes the slot if it changed anything."""
    if rmap_zap_collapsible_sptes(mmu, slot):
        mmu.flush_remote_tlbs()
    for key in list(mmu.tdp_roots(slot.as_id, (Root.DIRECT, Root.MIRROR), invalid=False)):
        if tdp_recover_huge_pages(mmu, key, slot):
            mmu.flush_remote_tlbs()


def on_memslot_set_flags(mmu: Mmu, op: MemslotSetFlags) -> Outcome:
    """kvm_set_memory_region with the slot's own base and size: refusals
    first, then no change at all for the same flags, else KVM_MR_FLAGS_ONLY
    and kvm_mmu_slot_apply_flags, which does nothing for a READONLY slot and
    otherwise turns dirty logging on or off."""
    slot = mmu.slots[op.slot]
    errno = memslot_flags_errno(mmu, slot, op.flags)
    if errno or op.flags == slot.flag_bits:
        return Outcome(errno=errno)
    slot = mmu.slots[slot.id] = replace(slot, log_dirty=bool(op.flags & MEM_LOG_DIRTY_PAGES))
    if slot.readonly:
        return Outcome()
    if slot.log_dirty:
        enable_dirty_logging(mmu, slot)
    else:
        recover_huge_pages(mmu, slot)
    return Outcome()


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
    MemslotSetFlags: on_memslot_set_flags,
    DisableQuirk: on_disable_quirk,
    MemoryTypeChange: on_memory_type_change,
    MmRelease: on_mm_release,
    VmDestroy: on_vm_destroy,
}
