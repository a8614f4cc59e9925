"""Event-layer operations as real host actions (docs/kernel-backend.md).

Every action here is exact: it asks the kernel to invalidate exactly the
spec's range. munmap/mprotect are never used: at an unaligned VMA split the
host mm invalidates the enclosing 2 MiB first, so they zap *at least* the
range (live-kernel.md §4).
"""
from __future__ import annotations

from typing import Callable

from conformance.model import (
    DisableQuirk, GmemPunchHole, MemoryTypeChange, MemslotDelete, MemslotMove, MemslotSetFlags, MmRelease,
    MmuNotifierInvalidate, Operation, Quirk, SetMemoryAttributes, VmDestroy,
)

from . import guest
from . import ioctl as k
from .session import Session
from .vm import Region

PAGE = guest.PAGE
QUIRKS = {Quirk.SLOT_ZAP_ALL: k.KVM_X86_QUIRK_SLOT_ZAP_ALL}
MTRR_ENABLE, MTRR_VALID, MTRR_UC, MTRR_WB = 1 << 11, 1 << 11, 0, 6
PAT_ALL_UC = 0  # every PAT entry UC: the strongest memory-type change a guest can make


class NotPerformed(Exception):
    """An operation this backend has no host action for."""


def errno_of(action: Callable[[], None]) -> int:
    try:
        action()
    except OSError as err:
        return err.errno
    return 0


def notifier(s: Session, op: MmuNotifierInvalidate) -> int:
    """MADV_DONTNEED of the range's backing, slot by slot: exactly [start, end)."""
    for spec_id, region in sorted(s.regions.items()):
        if op.as_id != region.kvm_slot >> 16:
            continue
        lo = max(op.start * PAGE, region.gpa)
        hi = min(op.end * PAGE, region.gpa + region.size)
        if lo < hi:
            lo, hi = whole_giant_pages(s, spec_id, region, lo, hi)
            k.madvise(region.hva(lo), hi - lo, k.MADV_DONTNEED)
    return 0


def whole_giant_pages(s: Session, spec_id: int, region: Region, lo: int, hi: int) -> tuple[int, int]:
    """The host mm invalidates a hugetlb page only whole (MADV_DONTNEED
    rounds a partial one away), so a range that covers part of a 1 GiB block
    is widened to the block. KVM then zaps the same leaves as for the exact
    range as long as the widened part holds no leaf but the 1G one itself,
    which a zap of any part removes anyway (spec §3.2); otherwise the action
    would not be exact and is refused."""
    for b0, b1 in region.giant_blocks():
        if b0 < hi and lo < b1 and not (lo <= b0 and b1 <= hi):
            extra = [(b0, lo), (hi, b1)]
            others = [c for c in s.layout.candidates if c.slot == spec_id and c.gpa != b0
                      and any(a <= c.gpa < b for a, b in extra)]
            if others:
                raise NotPerformed(f"the invalidation covers part of the 1 GiB hugetlb page at GPA {b0:#x}, which the "
                                   f"host can only invalidate whole, and {others[0].mapping.describe()} lies in the rest")
            lo, hi = min(lo, b0), max(hi, b1)
    return lo, hi


def punch_hole(s: Session, op: GmemPunchHole) -> int:
    region = s.regions[op.slot]
    if region.gmem_fd is None:
        raise NotPerformed(f"slot {op.slot} has no guest_memfd")
    offset = op.start * PAGE - region.gpa
    return errno_of(lambda: k.fallocate(region.gmem_fd, k.FALLOC_FL_PUNCH_HOLE | k.FALLOC_FL_KEEP_SIZE,
                                        offset, (op.end - op.start) * PAGE))


def delete(s: Session, op: MemslotDelete) -> int:
    err = s.vm.delete_region(s.regions[op.slot])
    if not err:
        del s.regions[op.slot]
    return err


def move(s: Session, op: MemslotMove) -> int:
    if (op.new_base_gfn + s.regions[op.slot].npages) * PAGE > s.layout.sys_gpa:
        raise NotPerformed(f"move target reaches this backend's system region at {s.layout.sys_gpa:#x}")
    return s.vm.move_region(s.regions[op.slot], op.new_base_gfn * PAGE)


def set_flags(s: Session, op: MemslotSetFlags) -> int:
    """KVM_SET_USER_MEMORY_REGION(2) at the slot's own base and size with the
    requested flags, exactly as the vector writes them."""
    return s.vm.set_flags(s.regions[op.slot], op.flags)


def disable_quirk(s: Session, op: DisableQuirk) -> int:
    return errno_of(lambda: s.vm.disable_quirks(QUIRKS[op.quirk]))


def memory_type(s: Session, op: MemoryTypeChange) -> int:
    """A variable MTRR over the range (UC), MTRRdefType WB, all-UC PAT, and a
    CR0.CD set-and-restore: every memory-type write a guest can make. The
    MSRs need a vCPU; a vector without mappings gets one that never runs."""
    s.vm.create_vcpu(s.cpuid)
    start, end = op.start * PAGE, op.end * PAGE
    size = 1 << max(12, (end - start - 1).bit_length())
    while (start & ~(size - 1)) + size < end:
        size <<= 1
    mask = ((1 << s.layout.phys_bits) - 1) & ~(size - 1)
    msrs = [(k.MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_WB),
            (k.MSR_MTRR_PHYSBASE0, (start & ~(size - 1)) | MTRR_UC),
            (k.MSR_MTRR_PHYSMASK0, mask | MTRR_VALID),
            (k.MSR_IA32_CR_PAT, PAT_ALL_UC)]
    done = s.vm.set_msrs(msrs)
    if done != len(msrs):
        raise NotPerformed(f"KVM_SET_MSRS accepted {done} of {len(msrs)} memory-type MSRs")
    s.vm.toggle_cr0_cd()
    return 0


def set_attributes(s: Session, op: SetMemoryAttributes) -> int:
    """Only reached where KVM_CAP_MEMORY_ATTRIBUTES is non-zero."""
    return errno_of(lambda: s.set_attributes(op.address, op.size, op.attributes, op.flags))


def destroy(s: Session, op: VmDestroy) -> int:
    s.vm.close()
    s.destroyed = True
    return 0


def mm_release(s: Session, op: MmRelease) -> int:
    raise NotPerformed("mm_release: the VMM's mm cannot go away under a live VM in this process")


ACTIONS: dict[type, Callable] = {
    MmuNotifierInvalidate: notifier,
    GmemPunchHole: punch_hole,
    MemslotDelete: delete,
    MemslotMove: move,
    MemslotSetFlags: set_flags,
    DisableQuirk: disable_quirk,
    MemoryTypeChange: memory_type,
    SetMemoryAttributes: set_attributes,
    VmDestroy: destroy,
    MmRelease: mm_release,
}


def perform(s: Session, op: Operation) -> int:
    action = ACTIONS.get(type(op))
    if action is None:
        raise NotPerformed(f"{type(op).__name__} is not an event this backend performs")
    return action(s, op)
