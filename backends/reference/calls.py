"""The call layer's argument plumbing, shared by both profiles: each op
unpacks into the profile's rule function, which returns the decision."""
from __future__ import annotations

from errno import EEXIST, EINVAL
from typing import Callable

from conformance.model import Decision, MemslotDelete, MemslotMove, Slot, ZapAll, ZapAllFast, ZapGfnRange, ZapMemslot

from .mmu import Mmu, Outcome

Handler = Callable[[Mmu, object], Outcome]


def zap_handlers(zap_gfn_range: Callable[[Mmu, int, int], Decision],
                 zap_memslot: Callable[[Mmu, Slot], Decision],
                 zap_all_fast: Callable[[Mmu], Decision],
                 zap_all: Callable[[Mmu], Decision]) -> dict[type, Handler]:
    """Handlers for the zaps that flush by themselves (or not at all)."""
    return {
        ZapGfnRange: lambda mmu, op: Outcome(decision=zap_gfn_range(mmu, op.start, op.end)),
        ZapMemslot: lambda mmu, op: Outcome(decision=zap_memslot(mmu, mmu.slots[op.slot])),
        ZapAllFast: lambda mmu, op: Outcome(decision=zap_all_fast(mmu)),
        ZapAll: lambda mmu, op: Outcome(decision=zap_all(mmu)),
    }


def crosses_alias(mmu: Mmu, slot: Slot, new_base: int) -> bool:
    """A TDX slot at `new_base` would reach the shared bit (kvm_is_gfn_alias)."""
    return mmu.vm.mirror and new_base + slot.npages > mmu.vm.shared_bit


def memslot_handlers(flush_memslot: Callable[[Mmu, Slot], object],
                     alias_after_zap: bool = False) -> dict[type, Handler]:
    """Delete and move differ between profiles in how the old slot's
    mappings are flushed (the profile's `flush_memslot` policy) and in when
    a move that would reach the TDX shared bit is refused: mainline refuses
    it in kvm_arch_prepare_memory_region, after kvm_invalidate_memslot has
    flushed the old slot (`alias_after_zap`)."""

    def delete(mmu: Mmu, op: MemslotDelete) -> Outcome:
        flush_memslot(mmu, mmu.slots[op.slot])
        del mmu.slots[op.slot]
        return Outcome()

    def move(mmu: Mmu, op: MemslotMove) -> Outcome:
        """kvm_set_memory_region, in its order: a private-capable slot is
        immutable, even at its own base (-EINVAL); the same base is no
        change at all (0, no KVM_MR_MOVE); a destination over another slot
        is -EEXIST; then the old slot is flushed and the slot moves."""
        slot, new_base = mmu.slots[op.slot], op.new_base_gfn
        if slot.private:
            return Outcome(errno=EINVAL)
        if new_base == slot.base_gfn:
            return Outcome()
        if crosses_alias(mmu, slot, new_base) and not alias_after_zap:
            return Outcome(errno=EINVAL)
        if mmu.slot_overlaps_other(slot, new_base):
            return Outcome(errno=EEXIST)
        flush_memslot(mmu, slot)
        if crosses_alias(mmu, slot, new_base):
            return Outcome(errno=EINVAL)  # refused after the flush; the slot stays where it was
        mmu.move_slot(slot, new_base)
        return Outcome()

    return {MemslotDelete: delete, MemslotMove: move}
