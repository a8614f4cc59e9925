//! Profile `tdx-v10` (docs/spec.md §4): TDX v10 patch 047 as its changelog
//! and review meant it. The switch is a per-call `zap_private`; the three
//! review fixes are that it starts out true, that the memory-type zap
//! passes false, and that a skipped private root leaves the flush alone.

use crate::common::{self, byte_range_to_gfns, AliasCheck, Outcome};
use crate::mmu::{Mmu, RootFilter};
use crate::model::{
    unmap_flag, warn, Decision, Op, Slot, EINVAL, MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, V10_ATTR_PRIVATE,
    V10_ATTR_SHARED,
};

/// `kvm_unmap_gfn_range`'s switch; None is the early return (§4.2).
fn decide_zap_private(mmu: &mut Mmu, slot: &Slot, flags: u64, attr: Option<u64>) -> Option<bool> {
    if !slot.private() {
        return Some(true);
    }
    if flags & unmap_flag::RESTRICTED_MEM != 0 {
        // Conversions go through the attribute ioctls.
        return None;
    }
    if flags & unmap_flag::SET_MEM_ATTR != 0 {
        if attr == Some(V10_ATTR_SHARED) {
            return Some(true);
        }
        if attr != Some(V10_ATTR_PRIVATE) {
            mmu.warn(warn::KVM_UNMAP_GFN_RANGE);
        }
    }
    // A notifier must not drop pinned private pages.
    Some(false)
}

/// In the 6.1 base a zap in an invalid root flushes too.
fn counts_in_v10(_invalid: bool) -> bool {
    true
}

/// `kvm_tdp_mmu_zap_leafs`: every root of the address space (or of all),
/// invalid ones included; the private root only with `zap_private`. The
/// flush is a pure OR.
fn tdp_zap_leafs(mmu: &mut Mmu, as_id: Option<u8>, start: u64, end: u64, flush: bool, zap_private: bool) -> bool {
    let filter = RootFilter { as_id, direct: true, mirror: zap_private, valid: true, invalid: true };
    mmu.zap_leafs(filter, start, end, counts_in_v10) || flush
}

fn decision_for(mmu: &Mmu, zap_private: Option<bool>) -> Decision {
    match zap_private {
        _ if !mmu.vm.tdp_mmu => Decision::Both,
        None => Decision::None,
        Some(zap_private) => mmu.kinds_in(true, zap_private),
    }
}

/// `kvm_unmap_gfn_range` (§4.1): rmap step, then the switch, then the TDP step.
fn unmap_gfn_range(
    mmu: &mut Mmu,
    slot: &Slot,
    start: u64,
    end: u64,
    flags: u64,
    attr: Option<u64>,
    flush_in: bool,
) -> (bool, Decision) {
    let mut flush = mmu.zap_rmaps(slot, start, end) || flush_in;
    if !mmu.vm.tdp_mmu {
        return (flush, Decision::Both);
    }
    let zap_private = decide_zap_private(mmu, slot, flags, attr);
    if let Some(zap_private) = zap_private {
        flush = tdp_zap_leafs(mmu, Some(slot.as_id), start, end, flush, zap_private);
    }
    (flush, decision_for(mmu, zap_private))
}

/// `kvm_zap_gfn_range`: rmaps and shared roots of every address space
/// (review fix C: never the private root), then its own flush.
fn zap_gfn_range(mmu: &mut Mmu, start: u64, end: u64) -> Decision {
    if end <= start {
        mmu.warn(warn::KVM_ZAP_GFN_RANGE);
        return Decision::None;
    }
    let mut flush = false;
    for slot in mmu.slots_overlapping(start, end, None) {
        flush |= mmu.zap_rmaps(&slot, start, end);
    }
    let flush = tdp_zap_leafs(mmu, None, start, end, flush, false);
    flush_if(mmu, flush);
    decision_for(mmu, Some(false))
}

/// `kvm_mmu_zap_memslot` (047): with the TDP MMU every root of the slot's
/// address space, private included, and no rmap walk; else the rmaps.
fn zap_memslot(mmu: &mut Mmu, slot: &Slot) -> Decision {
    let flush = if mmu.vm.tdp_mmu {
        tdp_zap_leafs(mmu, Some(slot.as_id), slot.base_gfn, slot.end_gfn(), false, true)
    } else {
        mmu.zap_rmaps(slot, slot.base_gfn, slot.end_gfn())
    };
    flush_if(mmu, flush);
    decision_for(mmu, Some(true))
}

/// `kvm_mmu_zap_all_fast`: `kvm_tdp_mmu_invalidate_all_roots` skips private
/// roots; obsolete shadow pages flush on commit. The 6.1 zap is a
/// `flush_workqueue`, so shared roots invalidated earlier go as well.
fn zap_all_fast(mmu: &mut Mmu) -> Decision {
    if mmu.zap_all_shadow() {
        mmu.flush_remote_tlbs();
    }
    mmu.zap_roots(RootFilter { as_id: None, direct: true, mirror: false, valid: true, invalid: true });
    decision_for(mmu, Some(false))
}

/// `kvm_mmu_zap_all`: shadow pages, then the unchanged 6.1
/// `kvm_tdp_mmu_zap_all`: every root, invalid and private included.
fn zap_all(mmu: &mut Mmu) -> Decision {
    if mmu.zap_all_shadow() {
        mmu.flush_remote_tlbs();
    }
    mmu.zap_roots(RootFilter { as_id: None, direct: true, mirror: true, valid: true, invalid: true });
    decision_for(mmu, Some(true))
}

fn flush_if(mmu: &mut Mmu, flush: bool) {
    if flush {
        mmu.flush_remote_tlbs();
    }
}

/// UPM v9 `kvm_vm_ioctl_set_mem_attr`: -EINVAL for an empty, overflowing or
/// unaligned range; no no-op rule; store first, then `kvm_unmap_mem_range`
/// over every overlapping slot with `SET_MEM_ATTR` and the new attribute.
fn set_memory_attributes(mmu: &mut Mmu, address: u64, size: u64, attributes: u64) -> Outcome {
    let aligned = address.is_multiple_of(PAGE_SIZE) && size.is_multiple_of(PAGE_SIZE);
    let Some((start, end)) = byte_range_to_gfns(address, size).filter(|_| size != 0 && aligned) else {
        return Outcome::errno(EINVAL);
    };
    let private = attributes & MEMORY_ATTRIBUTE_PRIVATE != 0;
    mmu.attrs.set(start, end, private);
    let attr = if private { V10_ATTR_PRIVATE } else { V10_ATTR_SHARED };
    let mut flush = false;
    for slot in mmu.slots_overlapping(start, end, None) {
        if let Some((lo, hi)) = slot.clip(start, end) {
            flush |= unmap_gfn_range(mmu, &slot, lo, hi, unmap_flag::SET_MEM_ATTR, Some(attr), false).0;
        }
    }
    flush_if(mmu, flush);
    Outcome::default()
}

/// `kvm_mmu_invalidate_zap_pages_in_memslot`: a TDX VM cannot lose its
/// private root, so it leaf-zaps the slot; other VMs fast-zap.
fn invalidate_zap_pages_in_memslot(mmu: &mut Mmu, slot: &Slot) {
    if mmu.vm.mirror() {
        zap_memslot(mmu, slot);
    } else {
        zap_all_fast(mmu);
    }
}

/// Perform one operation under the tdx-v10 rules.
pub fn step(mmu: &mut Mmu, op: &Op) -> Result<Outcome, String> {
    Ok(match *op {
        Op::UnmapGfnRange(u) => {
            let slot = mmu.slot(u.slot)?;
            let flags = u.flags & (unmap_flag::RESTRICTED_MEM | unmap_flag::SET_MEM_ATTR);
            let flush_in = u.flags & unmap_flag::FLUSH_IN != 0;
            let (flush, decision) = unmap_gfn_range(mmu, &slot, u.start, u.end, flags, u.attr, flush_in);
            Outcome { flush: Some(flush), decision: Some(decision), errno: 0 }
        }
        Op::ZapGfnRange { start, end } => Outcome::decided(zap_gfn_range(mmu, start, end)),
        Op::ZapMemslot { slot } => {
            let slot = mmu.slot(slot)?;
            Outcome::decided(zap_memslot(mmu, &slot))
        }
        Op::ZapAllFast => Outcome::decided(zap_all_fast(mmu)),
        Op::ZapAll => Outcome::decided(zap_all(mmu)),
        // The generic hva handler: flags 0, one flush.
        Op::MmuNotifierInvalidate { as_id, start, end } => {
            let mut flush = false;
            for slot in mmu.slots_overlapping(start, end, Some(as_id)) {
                if let Some((lo, hi)) = slot.clip(start, end) {
                    flush |= unmap_gfn_range(mmu, &slot, lo, hi, 0, None, false).0;
                }
            }
            flush_if(mmu, flush);
            Outcome::default()
        }
        // kvm_restrictedmem_invalidate_begin.
        Op::GmemPunchHole { slot, start, end } => {
            let slot = mmu.slot(slot)?;
            let (flush, _) = unmap_gfn_range(mmu, &slot, start, end, unmap_flag::RESTRICTED_MEM, None, false);
            flush_if(mmu, flush);
            Outcome::default()
        }
        Op::SetMemoryAttributes { address, size, attributes, .. } => {
            set_memory_attributes(mmu, address, size, attributes)
        }
        Op::MemslotDelete { slot } => common::memslot_delete(mmu, slot, invalidate_zap_pages_in_memslot)?,
        Op::MemslotMove { slot, new_base_gfn } => {
            common::memslot_move(mmu, slot, new_base_gfn, invalidate_zap_pages_in_memslot, AliasCheck::BeforeZap)?
        }
        Op::DisableQuirk => return Err("disable_quirk does not exist in tdx-v10".into()),
        Op::MemslotSetFlags { .. } => return Err("memslot_set_flags is not specified for tdx-v10".into()),
        // update_mtrr / kvm_post_set_cr0.
        Op::MemoryTypeChange { start, end } => {
            zap_gfn_range(mmu, start, end);
            Outcome::default()
        }
        Op::MmRelease | Op::VmDestroy => {
            zap_all(mmu);
            Outcome::default()
        }
        Op::DebugPanic => panic!("debug panic requested by the adapter"),
    })
}
