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


def move_errno(mmu: Mmu, slot: Slot, new_base: int) -> int:
    """Both profiles refuse the same moves: a private-capable slot is
    immutable and a TDX slot may not reach the shared bit (-EINVAL); the
    destination may not overlap another slot (-EEXIST)."""
    crosses_alias = mmu.vm.mirror and new_base + slot.npages > mmu.vm.shared_bit
    if slot.private or crosses_alias:
        return EINVAL
    return EEXIST if mmu.slot_overlaps_other(slot, new_base) else 0


def memslot_handlers(flush_memslot: Callable[[Mmu, Slot], object]) -> dict[type, Handler]:
    """Delete and move differ between profiles only in how the old slot's
    mappings are flushed (the profile's `flush_memslot` policy)."""

    def delete(mmu: Mmu, op: MemslotDelete) -> Outcome:
        flush_memslot(mmu, mmu.slots[op.slot])
        del mmu.slots[op.slot]
        return Outcome()

    def move(mmu: Mmu, op: MemslotMove) -> Outcome:
        slot = mmu.slots[op.slot]
        errno = move_errno(mmu, slot, op.new_base_gfn)
        if not errno:
            flush_memslot(mmu, slot)
            mmu.move_slot(slot, op.new_base_gfn)
        return Outcome(errno=errno)

    return {MemslotDelete: delete, MemslotMove: move}
