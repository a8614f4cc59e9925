"""The mutants: one plausible mistake each, named after the rule it breaks.

`rule` points at the spec (docs/spec.md) section the mistake violates. The
edits are textual and must match the reference exactly once, so a mutant
that no longer applies fails loudly instead of silently becoming the
reference.
"""
from __future__ import annotations

from dataclasses import dataclass

from .variants import Edit


@dataclass(frozen=True)
class Mutant:
    name: str
    rule: str
    description: str
    edits: tuple[Edit, ...]


def _m(name: str, rule: str, description: str, module: str, old: str, new: str) -> Mutant:
    return Mutant(name, rule, description, (Edit(module, old, new),))


MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- tdx-v10
    _m("v10-uninit-zap-private-false", "4.2", "a slot that cannot be private keeps private pages (bug a, one outcome)",
       "tdx_v10", "    if not slot.private:\n        return True", "    if not slot.private:\n        return False"),
    _m("v10-restricted-mem-no-early-return", "4.2", "RESTRICTED_MEM keeps private pages instead of returning early",
       "tdx_v10", "    if RangeFlag.RESTRICTED_MEM in flags:\n        return None",
       "    if RangeFlag.RESTRICTED_MEM in flags:\n        return False"),
    _m("v10-set-mem-attr-checked-first", "4.2", "SET_MEM_ATTR is tested before RESTRICTED_MEM",
       "tdx_v10", "    if RangeFlag.RESTRICTED_MEM in flags:\n        return None",
       "    if RangeFlag.RESTRICTED_MEM in flags and RangeFlag.SET_MEM_ATTR not in flags:\n        return None"),
    _m("v10-invalid-attr-silent", "4.2", "an attribute that is neither SHARED nor PRIVATE does not WARN",
       "tdx_v10", "            mmu.warn(WarnSite.KVM_UNMAP_GFN_RANGE)", "            pass"),
    _m("v10-invalid-attr-as-shared", "4.2", "an invalid attribute is treated as SHARED",
       "tdx_v10", "        if attr == V10_ATTR_SHARED:", "        if attr != V10_ATTR_PRIVATE:"),
    _m("v10-memtype-zaps-private", "4.4", "kvm_zap_gfn_range passes zap_private = true (bug b)",
       "tdx_v10", "flush = tdp_mmu_zap_leafs(mmu, None, start, end, flush, zap_private=False)",
       "flush = tdp_mmu_zap_leafs(mmu, None, start, end, flush, zap_private=True)"),
    _m("v10-skipped-root-drops-flush", "4.3", "a skipped private root returns false, losing the flush (bug c)",
       "tdx_v10", "    for key in list(mmu.tdp_roots(as_id, kinds, invalid=True)):\n"
                  "        flush = mmu.zap_leafs(key, start, end) or flush",
       "    for key in list(mmu.tdp_roots(as_id, (Root.DIRECT, Root.MIRROR), invalid=True)):\n"
       "        if key.root not in kinds:\n            flush = False\n            continue\n"
       "        flush = mmu.zap_leafs(key, start, end) or flush"),
    _m("v10-flush-in-dropped", "4.1", "the caller's pending flush is not passed into the TDP step",
       "tdx_v10", "    flush = mmu.zap_rmaps(slot, start, end) or flush_in\n    if not mmu.vm.tdp_mmu:\n"
                  "        return flush, Decision.BOTH\n    zap_private",
       "    flush = mmu.zap_rmaps(slot, start, end)\n    if not mmu.vm.tdp_mmu:\n"
       "        return flush, Decision.BOTH\n    zap_private"),
    _m("v10-memslot-zap-walks-rmaps", "4.4", "kvm_mmu_zap_memslot also walks rmaps under the TDP MMU",
       "tdx_v10", "        flush = tdp_mmu_zap_leafs(mmu, slot.as_id, slot.base_gfn, slot.end_gfn, False, zap_private=True)",
       "        flush = tdp_mmu_zap_leafs(mmu, slot.as_id, slot.base_gfn, slot.end_gfn,\n"
       "                                  mmu.zap_rmaps(slot, slot.base_gfn, slot.end_gfn), zap_private=True)"),
    _m("v10-fast-zap-takes-private-root", "4.4", "the fast zap invalidates the private root too",
       "tdx_v10", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=True)):\n        mmu.zap_root(key)\n"
                  "    return decision_for(mmu, False)",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=True)):\n        mmu.zap_root(key)\n"
       "    return decision_for(mmu, True)"),
    _m("v10-fast-zap-skips-queued-roots", "4.4", "the fast zap leaves shared roots invalidated earlier (mainline's rule "
       "applied to the 6.1 base, whose zap waits for the whole workqueue)",
       "tdx_v10", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=True)):\n        mmu.zap_root(key)\n"
                  "    return decision_for(mmu, False)",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=False)):\n        mmu.zap_root(key)\n"
       "    return decision_for(mmu, False)"),
    _m("v10-zap-all-keeps-private-root", "4.4", "kvm_mmu_zap_all leaves the private root",
       "tdx_v10", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=True)):\n        mmu.zap_root(key)\n"
                  "    return decision_for(mmu, True)",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=True)):\n        mmu.zap_root(key)\n"
       "    return decision_for(mmu, True)"),
    _m("v10-tdx-slot-removal-fast-zaps", "4.5", "a TDX memslot removal fast-zaps instead of zapping the slot",
       "tdx_v10", "    if mmu.vm.mirror:\n        zap_memslot(mmu, slot)", "    if False:\n        zap_memslot(mmu, slot)"),
    _m("v10-set-attr-noop-rule", "4.5", "v10 set-attributes skips a range that already has the attribute",
       "tdx_v10", "    mmu.set_private(start, end, private)\n    attr =",
       "    if (mmu.range_is_private if private else mmu.range_is_shared)(start, end):\n        return Outcome()\n"
       "    mmu.set_private(start, end, private)\n    attr ="),
    # ---------------------------------------------------------------- mainline
    _m("ml-filter-honoured-in-single-tree", "5.2", "a VM without mirror roots honours the attribute filter",
       "mainline", "    if not mmu.vm.mirror:\n        return frozenset({Root.DIRECT})",
       "    if not mmu.vm.mirror:\n        return frozenset({Root.DIRECT} if AttrFilter.SHARED in attr_filter else set())"),
    _m("ml-filter-roots-swapped", "5.2", "PRIVATE selects the direct root and SHARED the mirror root",
       "mainline", "    types = frozenset({Root.MIRROR} if AttrFilter.PRIVATE in attr_filter else set()) | frozenset(\n"
                   "        {Root.DIRECT} if AttrFilter.SHARED in attr_filter else set())",
       "    types = frozenset({Root.DIRECT} if AttrFilter.PRIVATE in attr_filter else set()) | frozenset(\n"
       "        {Root.MIRROR} if AttrFilter.SHARED in attr_filter else set())"),
    _m("ml-empty-filter-silent", "5.2", "an empty filter on TDX does not WARN",
       "mainline", "    if not types:\n        mmu.warn(WarnSite.FILTER_TO_ROOT_TYPES)", "    if not types:\n        pass"),
    _m("ml-invalid-root-flushes", "5.3", "a zap in an invalid root asks for a TLB flush",
       "mainline", "    return flush or (zapped and not key.invalid)", "    return flush or zapped"),
    _m("ml-notifier-takes-private", "5.5", "the mmu notifier unmaps with filter PRIVATE|SHARED",
       "mainline", "flush |= unmap_gfn_range(mmu, slot, lo, hi, frozenset({AttrFilter.SHARED}))[0]",
       "flush |= unmap_gfn_range(mmu, slot, lo, hi, BOTH_FILTERS)[0]"),
    _m("ml-notifier-every-address-space", "5.5", "the mmu notifier walks slots of every address space",
       "mainline", "    for slot in mmu.slots_overlapping(op.start, op.end, op.as_id):",
       "    for slot in mmu.slots_overlapping(op.start, op.end):"),
    _m("ml-gmem-filter-inverted", "5.5", "a guest_memfd punch-hole unmaps with the shared filter",
       "mainline", "    return frozenset({AttrFilter.SHARED if shared else AttrFilter.PRIVATE})",
       "    return frozenset({AttrFilter.PRIVATE if shared else AttrFilter.SHARED})"),
    _m("ml-set-attr-no-noop", "5.5", "setting attributes a range already has still unmaps and flushes",
       "mainline", "    if (mmu.range_is_private if private else mmu.range_is_shared)(start, end):\n        return Outcome()\n",
       ""),
    _m("ml-set-attr-unmaps-new-attribute", "5.5", "the pre-set unmap uses the new attribute's filter, not the old one",
       "mainline", "    old = frozenset({AttrFilter.SHARED if private else AttrFilter.PRIVATE})",
       "    old = frozenset({AttrFilter.PRIVATE if private else AttrFilter.SHARED})"),
    _m("ml-set-attr-unaligned-accepted", "5.5", "an unaligned address is accepted",
       "mainline", "           or op.address % PAGE_SIZE or op.size % PAGE_SIZE)", "           or op.size % PAGE_SIZE)"),
    _m("ml-set-attr-flags-ignored", "5.5", "a non-zero flags field is accepted",
       "mainline", "    bad = (op.flags != 0 or op.attributes", "    bad = (op.attributes"),
    _m("ml-set-attr-private-everywhere", "5.5", "PRIVATE is accepted on a VM without private memory",
       "mainline", "    supported = MEMORY_ATTRIBUTE_PRIVATE if mmu.vm.private_mem else 0",
       "    supported = MEMORY_ATTRIBUTE_PRIVATE"),
    _m("ml-quirk-ignored", "5.5", "memslot removal on a DEFAULT VM zaps everything even with the quirk off",
       "mainline", "    if mmu.vm.type is VmType.DEFAULT and mmu.vm.slot_zap_all:", "    if mmu.vm.type is VmType.DEFAULT:"),
    _m("ml-quirk-every-vm-type", "5.5", "SLOT_ZAP_ALL applies to every VM type",
       "mainline", "    if mmu.vm.type is VmType.DEFAULT and mmu.vm.slot_zap_all:", "    if mmu.vm.slot_zap_all:"),
    _m("ml-fast-zap-takes-mirror", "5.4", "the fast zap also tears down mirror roots",
       "mainline", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=False)):\n        mmu.zap_root(key)\n"
                   "    return mmu.kinds_in((Root.DIRECT,)) if mmu.vm.tdp_mmu else Decision.BOTH",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=False)):\n        mmu.zap_root(key)\n"
       "    return mmu.kinds_in((Root.DIRECT, Root.MIRROR)) if mmu.vm.tdp_mmu else Decision.BOTH"),
    _m("ml-fast-zap-takes-other-invalid-roots", "5.4", "the fast zap also zaps roots another zap invalidated",
       "mainline", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=False)):\n        mmu.zap_root(key)\n"
                   "    return mmu.kinds_in((Root.DIRECT,)) if mmu.vm.tdp_mmu else Decision.BOTH",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=True)):\n        mmu.zap_root(key)\n"
       "    return mmu.kinds_in((Root.DIRECT,)) if mmu.vm.tdp_mmu else Decision.BOTH"),
    _m("ml-zap-all-takes-mirror", "5.4", "kvm_mmu_zap_all tears down valid mirror roots before VM destruction",
       "mainline", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=True)):\n        mmu.zap_root(key)\n"
                   "    return mmu.kinds_in((Root.DIRECT,)) if mmu.vm.tdp_mmu else Decision.BOTH",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=True)):\n        mmu.zap_root(key)\n"
       "    return mmu.kinds_in((Root.DIRECT, Root.MIRROR)) if mmu.vm.tdp_mmu else Decision.BOTH"),
    _m("ml-zap-gfn-range-skips-mirror", "5.4", "kvm_zap_gfn_range leaves mirror roots alone",
       "mainline", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=False)):\n"
                   "        flush = tdp_mmu_zap_leafs(mmu, key, start, end, flush)",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT,), invalid=False)):\n"
       "        flush = tdp_mmu_zap_leafs(mmu, key, start, end, flush)"),
    _m("ml-zap-gfn-range-walks-invalid", "5.4", "kvm_zap_gfn_range also walks invalid roots",
       "mainline", "    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=False)):\n"
                   "        flush = tdp_mmu_zap_leafs(mmu, key, start, end, flush)",
       "    for key in list(mmu.tdp_roots(None, (Root.DIRECT, Root.MIRROR), invalid=True)):\n"
       "        flush = tdp_mmu_zap_leafs(mmu, key, start, end, flush)"),
    _m("ml-destroy-leaks-mirror", "5.5", "VM destruction never tears down the mirror root",
       "mainline", "    zap_all(mmu)\n    uninit_tdp_mmu(mmu)", "    zap_all(mmu)"),
    _m("ml-flush-in-dropped", "5.1", "the caller's pending flush is not passed into the TDP step",
       "mainline", "    flush = mmu.zap_rmaps(slot, start, end) or flush_in\n    if not mmu.vm.tdp_mmu:\n"
                   "        return flush, Decision.BOTH\n    types",
       "    flush = mmu.zap_rmaps(slot, start, end)\n    if not mmu.vm.tdp_mmu:\n        return flush, Decision.BOTH\n    types"),
    _m("ml-move-alias-refused-before-zap", "5.5", "a TDX move across the shared bit is refused before the old slot "
       "is flushed (mainline checks it in kvm_arch_prepare_memory_region, after kvm_invalidate_memslot)",
       "mainline", "    **memslot_handlers(flush_shadow_memslot, alias_after_zap=True),",
       "    **memslot_handlers(flush_shadow_memslot, alias_after_zap=False),"),
    _m("ml-dirty-log-no-eager-split", "5.7", "enabling dirty logging splits no huge leaf (eager_page_split ignored)",
       "mainline", "    if not mmu.vm.tdp_mmu:\n        return\n    if mmu.vm.rmaps:",
       "    if True:\n        return\n    if mmu.vm.rmaps:"),
    _m("ml-dirty-log-flush-only-if-split", "5.7", "enabling dirty logging flushes only when it split a leaf",
       "mainline", "    try_split_huge_pages(mmu, slot)\n    mmu.flush_remote_tlbs()",
       "    before = mmu.mappings()\n    try_split_huge_pages(mmu, slot)\n    if mmu.mappings() != before:\n"
       "        mmu.flush_remote_tlbs()"),
    _m("ml-readonly-slot-applies-flags", "5.7", "a READONLY slot's dirty-logging toggle splits or recovers as a "
       "writable slot's does", "mainline", "    if slot.readonly:\n        return Outcome()\n", ""),
    _m("ml-gmem-own-flags-no-change", "5.7", "a guest_memfd slot's own flags are treated as no change, not -EINVAL",
       "mainline", "    refused = (flags & ~valid or flags & MEM_GUEST_MEMFD\n",
       "    refused = (flags & ~valid\n"),
    _m("ml-recover-ignores-host-page", "5.7", "huge-page recovery ignores the host page size",
       "mainline", "            return min(level, mmu.host_level(slot.as_id, gfn))", "            return level"),
    _m("ml-recover-ignores-attributes", "5.7", "huge-page recovery ignores mixed memory attributes",
       "mainline", "        if inside and (not mmu.vm.private_mem or mmu.range_is_shared(block, block + level.pages)):",
       "        if inside:"),
    _m("ml-shadow-collapses-indirect", "5.7", "the shadow MMU zaps collapsible leaves of indirect shadow pages too",
       "mainline", "    for m in present & mmu.direct_shadow:", "    for m in set(present):"),
    # ---------------------------------------------------------------- shared mechanics
    _m("alias-bit-not-applied", "1.4", "the TDX direct root is walked at memslot GFNs, without the shared bit",
       "mmu", "        bit = self.vm.shared_bit if root is Root.DIRECT else 0", "        bit = 0"),
    _m("huge-leaf-kept-when-partly-covered", "3.2", "a huge leaf survives a range that covers only part of it",
       "mmu", "        hit = {m for m in leaves if m.gfn < hi and lo < m.end}", "        hit = {m for m in leaves if lo <= m.gfn and m.end <= hi}"),
    _m("range-end-inclusive", "3.2", "the range end is treated as inclusive (off by one)",
       "mmu", "        hit = {m for m in leaves if m.gfn < hi and lo < m.end}", "        hit = {m for m in leaves if m.gfn <= hi and lo < m.end}"),
    _m("ml-rmaps-follow-the-filter", "5.1", "the rmap step is skipped unless the filter includes SHARED",
       "mainline", "    flush = mmu.zap_rmaps(slot, start, end) or flush_in\n    if not mmu.vm.tdp_mmu:",
       "    flush = (AttrFilter.SHARED in attr_filter and mmu.zap_rmaps(slot, start, end)) or flush_in\n"
       "    if not mmu.vm.tdp_mmu:"),
    _m("move-to-own-base-moves", "5.5", "a move to the slot's own base is treated as KVM_MR_MOVE and flushes the slot",
       "calls", "        if new_base == slot.base_gfn:\n            return Outcome()\n", ""),
    _m("recover-zaps-instead", "5.7", "huge-page recovery zaps the block's leaves instead of rebuilding a huge leaf "
       "(the pre-6.13 TDP MMU)", "mmu", "        leaves.add(Mapping(lowest.as_id, lowest.root, gfn, level, lowest.kind, "
       "lowest.invalid))", "        del lowest"),
    _m("move-overlap-accepted", "2.2", "moving a slot onto another one is accepted",
       "calls", "        if mmu.slot_overlaps_other(slot, new_base):\n            return Outcome(errno=EEXIST)",
       "        if False:\n            return Outcome(errno=EEXIST)"),
)
