//! Profile `mainline` (Linux 6.18), docs/spec.md §5: the caller puts an
//! attribute filter in the range and the TDP MMU turns it into root types.

use crate::common::{self, byte_range_to_gfns, AliasCheck, Outcome};
use crate::mmu::{Mmu, RootFilter};
use crate::model::{unmap_flag, warn, Decision, Op, Slot, VmType, EINVAL, MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE};

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
