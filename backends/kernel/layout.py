"""Where a vector's state goes in a live VM: memslots, data pages, the
backend's own system region. Pure planning; nothing here touches KVM."""
from __future__ import annotations

from dataclasses import dataclass

from conformance.model import Level, Mapping, Root, Slot, State

from . import guest

PAGE = guest.PAGE
SYS_RESERVED = 4 << 20  # top 4 MiB of the guest physical space: system slot, then the MMIO page


class Unsupported(Exception):
    """The vector needs something this backend cannot set up (a bug in its
    capability declarations if it ever reaches run())."""


@dataclass(frozen=True)
class Candidate:
    """One initial mapping: the data page the guest touches to create it."""

    index: int  # position in Layout.candidates
    va: int  # guest virtual address the guest touches
    slot: int  # spec slot id
    mapping: Mapping

    @property
    def gpa(self) -> int:
        return self.mapping.gfn * PAGE

    @property
    def size(self) -> int:
        return self.mapping.level.pages * PAGE


@dataclass(frozen=True)
class Layout:
    sys_gpa: int
    mmio_gpa: int
    sys_slot: int  # KVM slot id of the system slot
    phys_bits: int  # guest MAXPHYADDR (CPUID 0x80000008)
    candidates: tuple[Candidate, ...]  # 4K ones first, then 2M ones

    @property
    def small(self) -> list[int]:
        return [c.gpa for c in self.candidates if c.mapping.level is Level.L4K]

    @property
    def huge(self) -> list[int]:
        return [c.gpa for c in self.candidates if c.mapping.level is Level.L2M]

    def huge_in(self, slot: int) -> tuple[int, ...]:
        """GPAs of the slot's 2M leaves: the only host ranges given THPs."""
        return tuple(c.gpa for c in self.candidates if c.slot == slot and c.mapping.level is Level.L2M)


def slot_of(state: State, m: Mapping) -> Slot:
    for s in state.slots:
        if s.as_id == m.as_id and s.base_gfn <= m.gfn < s.end_gfn:
            return s
    raise Unsupported(f"mapping {m.describe()} lies in no slot")


def plan(state: State, root: Root, phys_bits: int, nr_memslots: int) -> Layout:
    top = 1 << phys_bits
    sys_gpa, mmio_gpa = top - SYS_RESERVED, top - PAGE
    for s in state.slots:
        if s.end_gfn * PAGE > sys_gpa:
            raise Unsupported(f"slot {s.id} ends above GPA {sys_gpa:#x}, where this backend keeps its guest "
                              f"(MAXPHYADDR {phys_bits})")
        if s.id >= nr_memslots - 1:
            raise Unsupported(f"slot id {s.id} >= KVM_CAP_NR_MEMSLOTS - 1 = {nr_memslots - 1}")
    slots = {s.id: s for s in state.slots}
    for m in state.mappings:
        if m.root is not root or m.invalid or m.as_id or m.level is Level.L1G:
            raise Unsupported(f"initial mapping {m.describe()}: only valid 4K/2M {root.value} leaves in as_id 0")
        slot = slots[slot_of(state, m).id]
        if m.level is Level.L2M and (slot.private or slot.log_dirty):
            raise Unsupported(f"initial mapping {m.describe()}: a 2M leaf needs a THP-backed slot without dirty "
                              "logging; guest_memfd allocates 4K folios and dirty logging forces 4K")
    order = sorted(state.mappings, key=lambda m: (m.level, slot_of(state, m).id, m.gfn))
    small = [m for m in order if m.level is Level.L4K]
    if guest.data_tables(len(small)) > guest.MAX_DATA_PT or len(order) - len(small) > guest.MAX_HUGE:
        raise Unsupported(f"{len(small)} 4K and {len(order) - len(small)} 2M initial mappings; the guest maps at "
                          f"most {guest.MAX_DATA_PT * guest.PTES_PER_PAGE} and {guest.MAX_HUGE}")
    cands = []
    for index, m in enumerate(order):
        va = guest.va_4k(index) if m.level is Level.L4K else guest.va_2m(len(small), index - len(small))
        cands.append(Candidate(index, va, slot_of(state, m).id, m))
    return Layout(sys_gpa, mmio_gpa, nr_memslots - 1, phys_bits, tuple(cands))
