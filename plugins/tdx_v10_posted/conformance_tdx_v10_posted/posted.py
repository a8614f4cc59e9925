"""The v10 047 zap rules as posted on 2022-10-30, before review.

Written from the posted patch's control flow, on the reference backend's
MMU primitives. Three places differ from the `tdx-v10` profile, which
models the design its changelog and review intended:

a. kvm_unmap_gfn_range declares `bool zap_private;` and assigns it only
   inside `if (kvm_slot_can_be_private(slot))`: for any other slot the TDP
   step reads an uninitialised value (Ackerley Tng, 2022-11-22).
b. kvm_zap_gfn_range passes zap_private = true, so memory-type changes zap
   private pages, against the changelog (Kai Huang, 2022-12-14).
c. tdp_mmu_zap_leafs returns false for a private root it must skip, and
   kvm_tdp_mmu_zap_leafs assigns that to the flush it accumulates; the
   private root is visited after the shared one, so the shared root's flush
   (and any flush passed in) is lost (Chao Gao, 2024-04-17).

Everything else (events, slot zaps, teardown) is the profile's plumbing
(`tdx_v10.handlers`) over these rules.
"""
from __future__ import annotations

from typing import Optional, Union

from conformance.model import V10_ATTR_PRIVATE, V10_ATTR_SHARED, Decision, RangeFlag, Root, Slot, WarnSite
from conformance_reference import tdx_v10 as intended
from conformance_reference.mmu import Mmu


class Uninitialised:
    """The value of `zap_private` when nothing assigned it (bug a)."""


UNINITIALISED = Uninitialised()
ZapPrivate = Union[bool, Uninitialised, None]  # None: the early return


class PostedMmu(Mmu):
    """The reference MMU plus a note that some state is no longer determined."""

    def __init__(self, state) -> None:  # type: ignore[no-untyped-def]
        super().__init__(state)
        self.indeterminate = False


def decide_zap_private(mmu: Mmu, slot: Slot, flags: frozenset[RangeFlag], attr: Optional[int]) -> ZapPrivate:
    zap_private: ZapPrivate = UNINITIALISED  # bug a: declared without an initialiser
    if slot.private:
        if RangeFlag.RESTRICTED_MEM in flags:
            return None
        if RangeFlag.SET_MEM_ATTR in flags:
            if attr == V10_ATTR_SHARED:
                zap_private = True
            else:
                if attr != V10_ATTR_PRIVATE:
                    mmu.warn(WarnSite.KVM_UNMAP_GFN_RANGE)
                zap_private = False
        else:
            zap_private = False
    return zap_private


def tdp_mmu_zap_leafs(mmu: PostedMmu, as_id: Optional[int], start: int, end: int, flush: bool,
                      zap_private: ZapPrivate) -> bool:
    """kvm_tdp_mmu_zap_leafs as posted: the per-root helper returns false for
    a skipped private root and the loop assigns it (bug c)."""
    if isinstance(zap_private, Uninitialised):
        mmu.indeterminate = True  # which roots go, and the flush, depend on stack garbage
        zap_private = True  # any value keeps the model running; nothing after this is reported
    for key in list(mmu.tdp_roots(as_id, (Root.DIRECT, Root.MIRROR), invalid=True)):
        if key.root is Root.MIRROR and not zap_private:
            flush = False
            continue
        flush = mmu.zap_leafs(key, start, end) or flush
    return flush


def decision_for(mmu: Mmu, zap_private: ZapPrivate) -> Decision:
    if not mmu.vm.tdp_mmu:
        return Decision.BOTH
    if zap_private is None:
        return Decision.NONE
    if isinstance(zap_private, Uninitialised):
        return Decision.INDETERMINATE
    return mmu.kinds_in((Root.DIRECT, Root.MIRROR) if zap_private else (Root.DIRECT,))


def unmap_gfn_range(mmu: PostedMmu, slot: Slot, start: int, end: int, flags: frozenset[RangeFlag],
                    attr: Optional[int], flush_in: bool = False) -> tuple[bool, Decision]:
    flush = mmu.zap_rmaps(slot, start, end) or flush_in
    if not mmu.vm.tdp_mmu:
        return flush, Decision.BOTH
    zap_private = decide_zap_private(mmu, slot, flags, attr)
    decision = decision_for(mmu, zap_private)
    if zap_private is not None:
        flush = tdp_mmu_zap_leafs(mmu, slot.as_id, start, end, flush, zap_private)
    return flush, decision


def zap_gfn_range(mmu: PostedMmu, start: int, end: int) -> Decision:
    if end <= start:
        mmu.warn(WarnSite.KVM_ZAP_GFN_RANGE)
        return Decision.NONE
    flush = any([mmu.zap_rmaps(s, start, end) for s in mmu.slots_overlapping(start, end)])
    flush = tdp_mmu_zap_leafs(mmu, None, start, end, flush, zap_private=True)  # bug b
    if flush:
        mmu.flush_remote_tlbs()
    return decision_for(mmu, True)


# Everything else, slot zaps (zap_private = true, so bug c cannot bite)
# and teardown included, is the profile's plumbing over these two rules.
HANDLERS = intended.handlers(intended.Rules(unmap_gfn_range, zap_gfn_range))
