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

/// A TDX slot at `new_base` would reach the shared bit (`kvm_is_gfn_alias`).
fn reaches_alias(mmu: &Mmu, slot: &Slot, new_base: u64) -> bool {
    mmu.vm.mirror() && new_base.saturating_add(slot.npages) > mmu.vm.shared_bit()
}

/// When a move that would reach the TDX shared bit is refused.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AliasCheck {
    /// Before anything is zapped (the tdx-v10 profile).
    BeforeZap,
    /// In `kvm_arch_prepare_memory_region`, after `kvm_invalidate_memslot`
    /// has flushed the old slot (mainline).
    AfterZap,
}

/// `KVM_MR_DELETE`: the profile's flush of the old slot, then it is gone.
pub fn memslot_delete(mmu: &mut Mmu, id: u64, flush_memslot: fn(&mut Mmu, &Slot)) -> Result<Outcome, String> {
    let slot = mmu.slot(id)?;
    flush_memslot(mmu, &slot);
    mmu.slots.remove(&id);
    Ok(Outcome::default())
}

/// `KVM_MR_MOVE`, in `kvm_set_memory_region`'s order: a private-capable
/// slot is immutable, even at its own base (-EINVAL); its own base is no
/// change at all; a destination over another slot is -EEXIST (nothing
/// zapped so far); then the old slot is flushed and the slot moves.
pub fn memslot_move(
    mmu: &mut Mmu,
    id: u64,
    new_base: u64,
    flush_memslot: fn(&mut Mmu, &Slot),
    alias: AliasCheck,
) -> Result<Outcome, String> {
    let slot = mmu.slot(id)?;
    if slot.private() {
        return Ok(Outcome::errno(EINVAL));
    }
    if new_base == slot.base_gfn {
        return Ok(Outcome::default());
    }
    let reaches = reaches_alias(mmu, &slot, new_base);
    if reaches && alias == AliasCheck::BeforeZap {
        return Ok(Outcome::errno(EINVAL));
    }
    if mmu.slot_overlaps_other(&slot, new_base) {
        return Ok(Outcome::errno(EEXIST));
    }
    flush_memslot(mmu, &slot);
    if reaches {
        return Ok(Outcome::errno(EINVAL));
    }
    mmu.slots.insert(id, Slot { base_gfn: new_base, ..slot });
    Ok(Outcome::default())
}

/// A byte range as GFNs, or None when `address + size` reaches 2^64 (the
/// ioctls' overflow check).
pub fn byte_range_to_gfns(address: u64, size: u64) -> Option<(u64, u64)> {
    let end = address.checked_add(size)?;
    Some((address / PAGE_SIZE, end / PAGE_SIZE))
}
