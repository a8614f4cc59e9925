"""Where a vector's state goes in a live VM: memslots, data pages, the
backend's own system region. Pure planning; nothing here touches KVM."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from conformance.model import Kind, Level, Mapping, Root, Slot, State

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
    candidates: tuple[Candidate, ...]  # 4K ones first, then 2M, then 1G
    host_huge: tuple[tuple[int, int, Level], ...] = ()  # (slot, GPA, level) of huge host pages stated by the vector

    def gpas(self, level: Level) -> list[int]:
        return [c.gpa for c in self.candidates if c.mapping.level is level]

    @cached_property
    def small(self) -> list[int]:  # read at every observation: computed once
        return self.gpas(Level.L4K)

    @cached_property
    def huge(self) -> list[int]:  # read at every observation: computed once
        return self.gpas(Level.L2M)

    @cached_property
    def giant(self) -> list[int]:  # read at every observation: computed once
        return self.gpas(Level.L1G)

    def blocks_in(self, slot: int, level: Level) -> tuple[int, ...]:
        """GPAs of the slot's leaves of this level and of the huge host pages
        the vector states: the only host ranges given THPs (2M) or 1 GiB
        hugetlb pages (1G)."""
        leaves = {c.gpa for c in self.candidates if c.slot == slot and c.mapping.level is level}
        stated = {gpa for sid, gpa, lvl in self.host_huge if sid == slot and lvl is level}
        return tuple(sorted(leaves | stated))


def slot_of(state: State, m: Mapping) -> Slot:
    for s in state.slots:
        if s.as_id == m.as_id and s.base_gfn <= m.gfn < s.end_gfn:
            return s
    raise Unsupported(f"mapping {m.describe()} lies in no slot")


def slot_of_gfn(state: State, gfn: int) -> Slot:
    """The as_id-0 slot of a host_huge page (the loader keeps them inside one)."""
    return next(s for s in state.slots if s.as_id == 0 and s.base_gfn <= gfn < s.end_gfn)


def plan(state: State, root: Root, phys_bits: int, nr_memslots: int) -> Layout:
    top = 1 << phys_bits
    sys_gpa, mmio_gpa = top - SYS_RESERVED, top - PAGE
    for s in state.slots:
        if s.end_gfn * PAGE > sys_gpa:
            raise Unsupported(f"slot {s.id} ends above GPA {sys_gpa:#x}, where this backend keeps its guest "
                              f"(MAXPHYADDR {phys_bits})")
        if s.id >= nr_memslots - 1:
            raise Unsupported(f"slot id {s.id} >= KVM_CAP_NR_MEMSLOTS - 1 = {nr_memslots - 1}")
    for m in state.mappings:
        if m.root is not root or m.invalid:
            raise Unsupported(f"initial mapping {m.describe()}: only valid {root.value} leaves")
        slot = slot_of(state, m)
        if m.level > Level.L4K and (slot.private and m.kind is Kind.PRIVATE or slot.log_dirty):
            raise Unsupported(f"initial mapping {m.describe()}: a huge leaf needs a huge host page, which "
                              "guest_memfd (4K folios) and dirty logging (4K mappings) never give")
    order = sorted(state.mappings, key=lambda m: (m.level, slot_of(state, m).id, m.gfn))
    count = {level: sum(m.level is level for m in order) for level in Level}
    if (guest.data_tables(count[Level.L4K]) > guest.MAX_DATA_PT or count[Level.L2M] > guest.MAX_HUGE
            or count[Level.L1G] > guest.MAX_GIANT):
        raise Unsupported(f"{count[Level.L4K]} 4K, {count[Level.L2M]} 2M and {count[Level.L1G]} 1G initial "
                          f"mappings; the guest maps at most {guest.MAX_DATA_PT * guest.PTES_PER_PAGE}, "
                          f"{guest.MAX_HUGE} and {guest.MAX_GIANT}")
    first = {Level.L4K: 0, Level.L2M: count[Level.L4K], Level.L1G: count[Level.L4K] + count[Level.L2M]}
    cands = []
    for index, m in enumerate(order):
        nth = index - first[m.level]
        va = (guest.va_4k(nth) if m.level is Level.L4K else guest.va_2m(count[Level.L4K], nth)
              if m.level is Level.L2M else guest.va_1g(nth))
        cands.append(Candidate(index, va, slot_of(state, m).id, m))
    host_huge = tuple((slot_of_gfn(state, gfn).id, gfn * PAGE, level) for lo, hi, level in state.host_huge
                      for gfn in range(lo, hi, level.pages))
    return Layout(sys_gpa, mmio_gpa, nr_memslots - 1, phys_bits, tuple(cands), host_huge)
