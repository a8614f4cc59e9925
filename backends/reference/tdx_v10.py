"""Profile `tdx-v10`: TDX v10 patch 047 as its changelog and review intended
(docs/spec.md §4). One function per rule.

The v10 switch is `zap_private`, computed per call from the slot and the
range flags; the three review fixes are: it starts out true, the
memory-type zap passes false, and a skipped private root leaves the flush
accumulator alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from errno import EINVAL
from functools import partial
from typing import Callable, Optional

from conformance.model import (
    MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, V10_ATTR_PRIVATE, V10_ATTR_SHARED, Decision, GmemPunchHole,
    MemoryTypeChange, MmRelease, MmuNotifierInvalidate, RangeFlag, Root,
    SetMemoryAttributes, Slot, UnmapGfnRange, VmDestroy, WarnSite,
)

from .calls import Handler, memslot_handlers, zap_handlers
from .mmu import Mmu, Outcome

NO_FLAGS: frozenset[RangeFlag] = frozenset()


def decide_zap_private(mmu: Mmu, slot: Slot, flags: frozenset[RangeFlag], attr: Optional[int]) -> Optional[bool]:
    """kvm_unmap_gfn_range's switch; None is the early return.

    A slot that cannot be private zaps both (Ackerley Tng's fix). On a
    private-capable slot: RESTRICTED_MEM (tested first) returns early since
    conversions go through the attribute ioctls; SET_MEM_ATTR to SHARED zaps
    the private copy, anything else is treated as PRIVATE (WARN if invalid);
    flags 0 (mmu notifier) keeps private pages, which are pinned.
    """
    if not slot.private:
        return True
    if RangeFlag.RESTRICTED_MEM in flags:
        return None
    if RangeFlag.SET_MEM_ATTR in flags:
        if attr == V10_ATTR_SHARED:
            return True
        if attr != V10_ATTR_PRIVATE:
            mmu.warn(WarnSite.KVM_UNMAP_GFN_RANGE)
    return False


def tdp_mmu_zap_leafs(mmu: Mmu, as_id: Optional[int], start: int, end: int, flush: bool, zap_private: bool) -> bool:
    """kvm_tdp_mmu_zap_leafs: every root of the address space, invalid ones
    included; shared roots always, the private root only with zap_private.
    The flush is a pure OR: a skipped root never resets it (v10 bug c fixed), and
    in the 6.1 base a zap in an invalid root flushes too."""
    kinds = (Root.DIRECT, Root.MIRROR) if zap_private else (Root.DIRECT,)
    for key in list(mmu.tdp_roots(as_id, kinds, invalid=True)):
        flush = mmu.zap_leafs(key, start, end) or flush
    return flush


def decision_for(mmu: Mmu, zap_private: Optional[bool]) -> Decision:
    if not mmu.vm.tdp_mmu:
        return Decision.BOTH  # the shadow MMU has no private/shared switch
    if zap_private is None:
        return Decision.NONE
    return mmu.kinds_in((Root.DIRECT, Root.MIRROR) if zap_private else (Root.DIRECT,))


def unmap_gfn_range(mmu: Mmu, slot: Slot, start: int, end: int, flags: frozenset[RangeFlag],
                    attr: Optional[int], flush_in: bool = False) -> tuple[bool, Decision]:
    """kvm_unmap_gfn_range: the rmap step ignores the flags; the TDP MMU step
    receives its result OR the caller's pending flush."""
    flush = mmu.zap_rmaps(slot, start, end) or flush_in
    if not mmu.vm.tdp_mmu:
        return flush, Decision.BOTH
    zap_private = decide_zap_private(mmu, slot, flags, attr)
    if zap_private is not None:
        flush = tdp_mmu_zap_leafs(mmu, slot.as_id, start, end, flush, zap_private)
    return flush, decision_for(mmu, zap_private)


def zap_gfn_range(mmu: Mmu, start: int, end: int) -> Decision:
    """kvm_zap_gfn_range: memory-type changes must not zap private pages
    (the changelog's intent, v11's `false`); rmaps and shared roots of every
    address space go, then its own flush."""
    if end <= start:
        mmu.warn(WarnSite.KVM_ZAP_GFN_RANGE)
        return Decision.NONE
    flush = any([mmu.zap_rmaps(s, start, end) for s in mmu.slots_overlapping(start, end)])
    flush = tdp_mmu_zap_leafs(mmu, None, start, end, flush, zap_private=False)
    if flush:
        mmu.flush_remote_tlbs()
    return decision_for(mmu, False)


def zap_memslot(mmu: Mmu, slot: Slot) -> Decision:
    """kvm_mmu_zap_memslot (new in 047): with the TDP MMU, a leaf zap of the
    whole slot in every root including the private one, and no rmap walk;
    without it, the slot's rmaps at every level."""
    if mmu.vm.tdp_mmu:
        flush = tdp_mmu_zap_leafs(mmu, slot.as_id, slot.base_gfn, slot.end_gfn, False, zap_private=True)
    else:
        flush = mmu.zap_rmaps(slot, slot.base_gfn, slot.end_gfn)
    if flush:
        mmu.flush_remote_tlbs()
    return decision_for(mmu, True)


def zap_all_fast(mmu: Mmu) -> Decision:
    """kvm_mmu_zap_all_fast: kvm_tdp_mmu_invalidate_all_roots skips private
    roots (the TDX module cannot swap them), so only shared roots are
    invalidated and torn down; obsolete shadow pages flush on commit. In the
    6.1 base the zap waits for the whole zap workqueue, so shared roots that
    were already invalid (queued earlier) are gone afterwards too."""
    if mmu.zap_all_shadow():
        mmu.flush_remote_tlbs()
    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=True)):
        mmu.zap_root(key)
    return decision_for(mmu, False)


def zap_all(mmu: Mmu) -> Decision:
    """kvm_mmu_zap_all: shadow pages, then the 6.1 kvm_tdp_mmu_zap_all, which
    047 leaves alone: every root, invalid and private ones included."""
    if mmu.zap_all_shadow():
        mmu.flush_remote_tlbs()
    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=True)):
        mmu.zap_root(key)
    return decision_for(mmu, True)


# ---------------------------------------------------------------- plumbing
# Every entry point and event goes through two rule functions. A model of
# other v10 code (plugins/tdx_v10_posted) swaps them and keeps the plumbing.


@dataclass(frozen=True)
class Rules:
    unmap_gfn_range: Callable[..., tuple[bool, Decision]]
    zap_gfn_range: Callable[[Mmu, int, int], Decision]


def call_unmap_gfn_range(rules: Rules, mmu: Mmu, op: UnmapGfnRange) -> Outcome:
    flush, decision = rules.unmap_gfn_range(mmu, mmu.slots[op.slot], op.start, op.end, op.range_flags, op.attr,
                                            op.flush_in)
    return Outcome(flush=flush, decision=decision)


def on_mmu_notifier_invalidate(rules: Rules, mmu: Mmu, op: MmuNotifierInvalidate) -> Outcome:
    """The generic hva handler: every slot of the address space, flags 0, one flush."""
    flush = False
    for slot in mmu.slots_overlapping(op.start, op.end, op.as_id):
        lo, hi = max(op.start, slot.base_gfn), min(op.end, slot.end_gfn)
        flush |= rules.unmap_gfn_range(mmu, slot, lo, hi, NO_FLAGS, None)[0]
    if flush:
        mmu.flush_remote_tlbs()
    return Outcome()


def on_gmem_punch_hole(rules: Rules, mmu: Mmu, op: GmemPunchHole) -> Outcome:
    """kvm_restrictedmem_invalidate_begin: RESTRICTED_MEM, flush if asked."""
    flush, _ = rules.unmap_gfn_range(mmu, mmu.slots[op.slot], op.start, op.end,
                                     frozenset({RangeFlag.RESTRICTED_MEM}), None)
    # Unreachable in v10: only TDX has private slots, RESTRICTED_MEM returns
    # before any zap there and TDX has no rmaps. Kept to mirror the callback.
    if flush:  # pragma: no cover
        mmu.flush_remote_tlbs()
    return Outcome()


def on_set_memory_attributes(rules: Rules, mmu: Mmu, op: SetMemoryAttributes) -> Outcome:
    """UPM v9 kvm_vm_ioctl_set_mem_attr (ENCRYPT_REG_REGION = private,
    UNREG = shared): -EINVAL for an empty, overflowing or unaligned range;
    no no-op rule; store first, then kvm_unmap_mem_range over every
    overlapping slot with SET_MEM_ATTR and the new attribute; one flush."""
    bad = op.size == 0 or op.address + op.size >= 1 << 64 or op.address % PAGE_SIZE or op.size % PAGE_SIZE
    if bad:
        return Outcome(errno=EINVAL)
    start, end = op.address // PAGE_SIZE, (op.address + op.size) // PAGE_SIZE
    private = bool(op.attributes & MEMORY_ATTRIBUTE_PRIVATE)
    mmu.set_private(start, end, private)
    attr = V10_ATTR_PRIVATE if private else V10_ATTR_SHARED
    flush = False
    for slot in mmu.slots_overlapping(start, end):
        lo, hi = max(start, slot.base_gfn), min(end, slot.end_gfn)
        flush |= rules.unmap_gfn_range(mmu, slot, lo, hi, frozenset({RangeFlag.SET_MEM_ATTR}), attr)[0]
    if flush:
        mmu.flush_remote_tlbs()
    return Outcome()


def invalidate_zap_pages_in_memslot(mmu: Mmu, slot: Slot) -> None:
    """kvm_mmu_invalidate_zap_pages_in_memslot: a TDX VM (shared mask set)
    must not lose its private root, so it leaf-zaps the slot; others fast-zap."""
    if mmu.vm.mirror:
        zap_memslot(mmu, slot)
    else:
        zap_all_fast(mmu)


def on_memory_type_change(rules: Rules, mmu: Mmu, op: MemoryTypeChange) -> Outcome:
    """update_mtrr / kvm_post_set_cr0 reach kvm_zap_gfn_range."""
    rules.zap_gfn_range(mmu, op.start, op.end)
    return Outcome()


def on_teardown(mmu: Mmu, op: object) -> Outcome:
    """mm release and VM destruction: kvm_mmu_zap_all."""
    zap_all(mmu)
    return Outcome()


def handlers(rules: Rules) -> dict[type, Handler]:
    bound = {
        UnmapGfnRange: call_unmap_gfn_range,
        MmuNotifierInvalidate: on_mmu_notifier_invalidate,
        GmemPunchHole: on_gmem_punch_hole,
        SetMemoryAttributes: on_set_memory_attributes,
        MemoryTypeChange: on_memory_type_change,
    }
    return {
        **zap_handlers(rules.zap_gfn_range, zap_memslot, zap_all_fast, zap_all),
        **{op: partial(handler, rules) for op, handler in bound.items()},
        **memslot_handlers(invalidate_zap_pages_in_memslot),
        MmRelease: on_teardown,
        VmDestroy: on_teardown,
    }


HANDLERS = handlers(Rules(unmap_gfn_range, zap_gfn_range))
