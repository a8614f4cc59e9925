//! Profile `mainline` (Linux 6.18), docs/spec.md §5: the caller puts an
//! attribute filter in the range and the TDP MMU turns it into root types.

use crate::common::{self, byte_range_to_gfns, AliasCheck, Outcome};
use crate::mmu::{Mmu, RootFilter};
use crate::model::{
    mem_flag, slot_flag, unmap_flag, warn, Decision, Op, Slot, VmType, EINVAL, MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE,
};
use crate::table::entry_pages;

/// `enum kvm_gfn_range_filter` as two booleans.
#[derive(Clone, Copy)]
struct Filter {
    shared: bool,
    private: bool,
}

const SHARED: Filter = Filter { shared: true, private: false };
const PRIVATE: Filter = Filter { shared: false, private: true };
const BOTH: Filter = Filter { shared: true, private: true };

/// Root types as (direct, mirror).
type RootTypes = (bool, bool);

/// `kvm_gfn_range_filter_to_root_types`: only mirrored TDP reads the filter.
fn filter_to_root_types(mmu: &mut Mmu, filter: Filter) -> RootTypes {
    if !mmu.vm.mirror() {
        return (true, false);
    }
    let types = (filter.shared, filter.private);
    if types == (false, false) {
        mmu.warn(warn::FILTER_TO_ROOT_TYPES);
    }
    types
}

/// `tdp_mmu_zap_leafs` in mainline: a zap in an invalid root needs no flush.
fn counts_in_mainline(invalid: bool) -> bool {
    !invalid
}

/// `kvm_tdp_mmu_unmap_gfn_range`: valid and invalid roots of the selected
/// types in the slot's address space; `tdp_mmu_root_match` WARNs when the
/// types name no root.
fn tdp_unmap(mmu: &mut Mmu, slot: &Slot, start: u64, end: u64, (direct, mirror): RootTypes, flush: bool) -> bool {
    if !direct && !mirror {
        mmu.warn(warn::TDP_MMU_ROOT_MATCH);
    }
    let filter = RootFilter { as_id: Some(slot.as_id), direct, mirror, valid: true, invalid: true };
    mmu.zap_leafs(filter, start, end, counts_in_mainline) || flush
}

/// `kvm_unmap_gfn_range`: the rmap step ignores the filter; the TDP step
/// receives its result OR the caller's pending flush. No early return.
fn unmap_gfn_range(
    mmu: &mut Mmu,
    slot: &Slot,
    start: u64,
    end: u64,
    filter: Filter,
    flush_in: bool,
) -> (bool, Decision) {
    let flush = mmu.zap_rmaps(slot, start, end) || flush_in;
    if !mmu.vm.tdp_mmu {
        return (flush, Decision::Both);
    }
    let types = filter_to_root_types(mmu, filter);
    let flush = tdp_unmap(mmu, slot, start, end, types, flush);
    (flush, mmu.kinds_in(types.0, types.1))
}

/// Decision of a walk over direct roots only, or the shadow MMU's `both`.
fn direct_decision(mmu: &Mmu) -> Decision {
    if mmu.vm.tdp_mmu {
        mmu.kinds_in(true, false)
    } else {
        Decision::Both
    }
}

/// `kvm_zap_gfn_range`: rmaps of every overlapping slot, then every valid
/// root of every address space, unfiltered; its own ranged flush.
fn zap_gfn_range(mmu: &mut Mmu, start: u64, end: u64) -> Decision {
    if end <= start {
        mmu.warn(warn::KVM_ZAP_GFN_RANGE);
        return Decision::None;
    }
    let mut flush = false;
    for slot in mmu.slots_overlapping(start, end, None) {
        flush |= mmu.zap_rmaps(&slot, start, end);
    }
    let filter = RootFilter { as_id: None, direct: true, mirror: true, valid: true, invalid: false };
    flush |= mmu.zap_leafs(filter, start, end, counts_in_mainline);
    if flush {
        mmu.flush_remote_tlbs();
    }
    if mmu.vm.tdp_mmu {
        mmu.kinds_in(true, true)
    } else {
        Decision::Both
    }
}

/// `kvm_mmu_zap_memslot`: the whole slot with both filters, then
/// `kvm_mmu_zap_memslot_pages_and_flush`.
fn zap_memslot(mmu: &mut Mmu, slot: &Slot) -> Decision {
    let (flush, decision) = unmap_gfn_range(mmu, slot, slot.base_gfn, slot.end_gfn(), BOTH, false);
    if flush {
        mmu.flush_remote_tlbs();
    }
    decision
}

/// `kvm_mmu_zap_all_fast`: obsolete shadow pages go (their commit flushes);
/// valid direct roots only are invalidated and torn down, without a flush.
fn zap_all_fast(mmu: &mut Mmu) -> Decision {
    if mmu.zap_all_shadow() {
        mmu.flush_remote_tlbs();
    }
    mmu.zap_roots(RootFilter { as_id: None, direct: true, mirror: false, valid: true, invalid: false });
    direct_decision(mmu)
}

/// `kvm_mmu_zap_all`: every shadow page, then `kvm_tdp_mmu_zap_all` over
/// direct and invalid-direct roots; valid mirror roots stay.
fn zap_all(mmu: &mut Mmu) -> Decision {
    if mmu.zap_all_shadow() {
        mmu.flush_remote_tlbs();
    }
    mmu.zap_roots(RootFilter { as_id: None, direct: true, mirror: false, valid: true, invalid: true });
    direct_decision(mmu)
}

/// `kvm_mmu_uninit_tdp_mmu`: every remaining root, mirror included.
fn uninit_tdp_mmu(mmu: &mut Mmu) {
    mmu.zap_roots(RootFilter { as_id: None, direct: true, mirror: true, valid: true, invalid: true });
}

/// Run `unmap_gfn_range` over each slot's part of `[start, end)`; true if
/// any returned a flush.
fn unmap_slots(mmu: &mut Mmu, slots: Vec<Slot>, start: u64, end: u64, filter: Filter) -> bool {
    let mut flush = false;
    for slot in slots {
        if let Some((lo, hi)) = slot.clip(start, end) {
            flush |= unmap_gfn_range(mmu, &slot, lo, hi, filter, false).0;
        }
    }
    flush
}

fn flush_if(mmu: &mut Mmu, flush: bool) {
    if flush {
        mmu.flush_remote_tlbs();
    }
}

/// `kvm_vm_ioctl_set_mem_attributes` validation: flags, unsupported bits,
/// an empty or overflowing range, alignment; all -EINVAL.
fn set_attributes_range(mmu: &Mmu, address: u64, size: u64, attributes: u64, flags: u64) -> Option<(u64, u64)> {
    let supported = if mmu.vm.private_mem() { MEMORY_ATTRIBUTE_PRIVATE } else { 0 };
    if flags != 0
        || attributes & !supported != 0
        || size == 0
        || !address.is_multiple_of(PAGE_SIZE)
        || !size.is_multiple_of(PAGE_SIZE)
    {
        return None;
    }
    byte_range_to_gfns(address, size)
}

/// `kvm_vm_set_mem_attributes`: a no-op when the range already has the
/// attributes; else unmap the *old* attribute's pages in every overlapping
/// slot, one flush, then store.
fn set_memory_attributes(mmu: &mut Mmu, address: u64, size: u64, attributes: u64, flags: u64) -> Outcome {
    let Some((start, end)) = set_attributes_range(mmu, address, size, attributes, flags) else {
        return Outcome::errno(EINVAL);
    };
    let private = attributes & MEMORY_ATTRIBUTE_PRIVATE != 0;
    let unchanged = if private { mmu.attrs.all_private(start, end) } else { mmu.attrs.all_shared(start, end) };
    if unchanged {
        return Outcome::default();
    }
    let old = if private { SHARED } else { PRIVATE };
    let slots = mmu.slots_overlapping(start, end, None);
    let flush = unmap_slots(mmu, slots, start, end, old);
    flush_if(mmu, flush);
    mmu.attrs.set(start, end, private);
    Outcome::default()
}

/// `kvm_arch_flush_shadow_memslot`: a DEFAULT VM with `SLOT_ZAP_ALL` fast-
/// zaps everything; any other VM, or the quirk off, zaps the slot.
fn flush_shadow_memslot(mmu: &mut Mmu, slot: &Slot) {
    if mmu.vm.vm_type == VmType::Default && mmu.vm.slot_zap_all {
        zap_all_fast(mmu);
    } else {
        zap_memslot(mmu, slot);
    }
}

// -- flags-only memslot changes (spec 5.7)

/// `check_memory_region_flags`, then `kvm_set_memory_region`'s checks of an
/// existing slot: unknown bits, GUEST_MEMFD with LOG_DIRTY_PAGES or
/// READONLY, READONLY on a VM with protected state, any request carrying
/// GUEST_MEMFD (guest_memfd slots are immutable), and a change of READONLY
/// or GUEST_MEMFD are all -EINVAL.
fn memslot_flags_refused(mmu: &Mmu, slot: &Slot, flags: u64) -> bool {
    let gmem = flags & mem_flag::GUEST_MEMFD != 0;
    let mut valid = mem_flag::GUEST_MEMFD;
    if !gmem {
        valid |= mem_flag::LOG_DIRTY_PAGES;
        if !mmu.vm.protected_state() {
            valid |= mem_flag::READONLY;
        }
    }
    let toggled = (flags ^ slot.mem_flags()) & (mem_flag::READONLY | mem_flag::GUEST_MEMFD);
    flags & !valid != 0 || gmem || toggled != 0
}

/// `kvm_mmu_max_mapping_level` at a memslot GFN, as a level: the largest
/// block inside the slot (lpage_info) that, with private memory, is all
/// shared; capped by the host page.
fn max_mapping_level(mmu: &Mmu, slot: &Slot, gfn: u64) -> u8 {
    for level in [3u8, 2] {
        let pages = entry_pages(level);
        let block = gfn - gfn % pages;
        let inside = slot.base_gfn <= block && block + pages <= slot.end_gfn();
        if inside && (!mmu.vm.private_mem() || mmu.attrs.all_shared(block, block + pages)) {
            return level.min(mmu.host_level(slot.as_id, gfn));
        }
    }
    1
}

/// `kvm_mmu_slot_apply_flags` for a flags-only change that toggles dirty
/// logging on a writable slot. On: eager split (TDP MMU only; the nested
/// shadow MMU's huge leaves too), write protection, an unconditional flush.
/// Off: `kvm_mmu_recover_huge_pages`, the shadow MMU zapping collapsible
/// leaves and the TDP MMU recovering huge leaves in place, each flushing if
/// it changed something.
fn apply_dirty_logging(mmu: &mut Mmu, slot: &Slot) {
    if slot.log_dirty() {
        if mmu.vm.tdp_mmu {
            mmu.split_slot(slot, mmu.vm.rmaps);
        }
        mmu.flush_remote_tlbs();
        return;
    }
    if mmu.vm.rmaps && mmu.zap_collapsible_shadow(slot, |m, table| max_mapping_level(m, slot, table) >= 2) {
        mmu.flush_remote_tlbs();
    }
    for changed in mmu.recover_slot(slot, |m, gfn, level| max_mapping_level(m, slot, gfn) >= level) {
        flush_if(mmu, changed);
    }
}

/// `kvm_set_memory_region` at the slot's own base and size with new flags.
fn memslot_set_flags(mmu: &mut Mmu, id: u64, flags: u64) -> Result<Outcome, String> {
    let slot = mmu.slot(id)?;
    if memslot_flags_refused(mmu, &slot, flags) {
        return Ok(Outcome::errno(EINVAL));
    }
    if flags == slot.mem_flags() {
        return Ok(Outcome::default()); // "Nothing to change"
    }
    let log_dirty = if flags & mem_flag::LOG_DIRTY_PAGES != 0 { slot_flag::LOG_DIRTY } else { 0 };
    let slot = Slot { flags: slot.flags & !slot_flag::LOG_DIRTY | log_dirty, ..slot };
    mmu.slots.insert(id, slot);
    if !slot.readonly() {
        apply_dirty_logging(mmu, &slot);
    }
    Ok(Outcome::default())
}

/// Perform one operation under the mainline rules.
pub fn step(mmu: &mut Mmu, op: &Op) -> Result<Outcome, String> {
    Ok(match *op {
        Op::UnmapGfnRange(u) => {
            let slot = mmu.slot(u.slot)?;
            let filter = Filter {
                shared: u.flags & unmap_flag::FILTER_SHARED != 0,
                private: u.flags & unmap_flag::FILTER_PRIVATE != 0,
            };
            let flush_in = u.flags & unmap_flag::FLUSH_IN != 0;
            let (flush, decision) = unmap_gfn_range(mmu, &slot, u.start, u.end, filter, flush_in);
            Outcome { flush: Some(flush), decision: Some(decision), errno: 0 }
        }
        Op::ZapGfnRange { start, end } => Outcome::decided(zap_gfn_range(mmu, start, end)),
        Op::ZapMemslot { slot } => {
            let slot = mmu.slot(slot)?;
            Outcome::decided(zap_memslot(mmu, &slot))
        }
        Op::ZapAllFast => Outcome::decided(zap_all_fast(mmu)),
        Op::ZapAll => Outcome::decided(zap_all(mmu)),
        // __kvm_handle_hva_range: host memory backs only shared mappings.
        Op::MmuNotifierInvalidate { as_id, start, end } => {
            let slots = mmu.slots_overlapping(start, end, Some(as_id));
            let flush = unmap_slots(mmu, slots, start, end, SHARED);
            flush_if(mmu, flush);
            Outcome::default()
        }
        // kvm_gmem_invalidate_begin, filter from kvm_gmem_get_invalidate_filter.
        Op::GmemPunchHole { slot, start, end } => {
            let slot = mmu.slot(slot)?;
            let filter = if slot.init_shared() { SHARED } else { PRIVATE };
            let (flush, _) = unmap_gfn_range(mmu, &slot, start, end, filter, false);
            flush_if(mmu, flush);
            Outcome::default()
        }
        Op::SetMemoryAttributes { address, size, attributes, flags } => {
            set_memory_attributes(mmu, address, size, attributes, flags)
        }
        Op::MemslotDelete { slot } => common::memslot_delete(mmu, slot, flush_shadow_memslot)?,
        Op::MemslotMove { slot, new_base_gfn } => {
            common::memslot_move(mmu, slot, new_base_gfn, flush_shadow_memslot, AliasCheck::AfterZap)?
        }
        Op::MemslotSetFlags { slot, flags } => memslot_set_flags(mmu, slot, flags)?,
        Op::DisableQuirk => {
            mmu.vm.slot_zap_all = false;
            Outcome::default()
        }
        // MTRR virtualisation and the CR0.CD zap were removed in v6.11.
        Op::MemoryTypeChange { .. } => Outcome::default(),
        Op::MmRelease => {
            zap_all(mmu);
            Outcome::default()
        }
        Op::VmDestroy => {
            zap_all(mmu);
            uninit_tdp_mmu(mmu);
            Outcome::default()
        }
        Op::DebugPanic => panic!("debug panic requested by the adapter"),
    })
}
