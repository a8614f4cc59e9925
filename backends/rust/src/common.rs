//! What both profiles share: a step's outcome, and the memslot ioctls,
//! which differ between profiles only in how the old slot is flushed.

use crate::mmu::Mmu;
use crate::model::{Decision, Slot, EEXIST, EINVAL, PAGE_SIZE};

/// What one operation returns besides the mappings it leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The returned flush (`kvm_unmap_gfn_range`); None: remote flushes count.
    pub flush: Option<bool>,
    pub decision: Option<Decision>,
    pub errno: i32,
}

impl Outcome {
    pub fn decided(decision: Decision) -> Self {
        Outcome { decision: Some(decision), ..Outcome::default() }
    }

    pub fn errno(errno: i32) -> Self {
        Outcome { errno, ..Outcome::default() }
    }
}

/// Moves both profiles refuse: a private-capable slot is immutable, a TDX
/// slot may not reach the shared bit (-EINVAL); the destination may not
/// overlap another slot of its address space (-EEXIST).
fn move_errno(mmu: &Mmu, slot: &Slot, new_base: u64) -> i32 {
    let reaches_alias = mmu.vm.mirror() && new_base.saturating_add(slot.npages) > mmu.vm.shared_bit();
    if slot.private() || reaches_alias {
        EINVAL
    } else if mmu.slot_overlaps_other(slot, new_base) {
        EEXIST
    } else {
        0
    }
}

/// `KVM_MR_DELETE`: the profile's flush of the old slot, then it is gone.
pub fn memslot_delete(mmu: &mut Mmu, id: u64, flush_memslot: fn(&mut Mmu, &Slot)) -> Result<Outcome, String> {
    let slot = mmu.slot(id)?;
    flush_memslot(mmu, &slot);
    mmu.slots.remove(&id);
    Ok(Outcome::default())
}

/// `KVM_MR_MOVE`: refused moves zap nothing; otherwise as delete, then move.
pub fn memslot_move(
    mmu: &mut Mmu,
    id: u64,
    new_base: u64,
    flush_memslot: fn(&mut Mmu, &Slot),
) -> Result<Outcome, String> {
    let slot = mmu.slot(id)?;
    let errno = move_errno(mmu, &slot, new_base);
    if errno == 0 {
        flush_memslot(mmu, &slot);
        mmu.slots.insert(id, Slot { base_gfn: new_base, ..slot });
    }
    Ok(Outcome::errno(errno))
}

/// A byte range as GFNs, or None when `address + size` reaches 2^64 (the
/// ioctls' overflow check).
pub fn byte_range_to_gfns(address: u64, size: u64) -> Option<(u64, u64)> {
    let end = address.checked_add(size)?;
    Some((address / PAGE_SIZE, end / PAGE_SIZE))
}
