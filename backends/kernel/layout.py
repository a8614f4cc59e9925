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

    index: int  # data page number: guest VA = DATA_VA + index * 4096
    slot: int  # spec slot id
    mapping: Mapping

    @property
    def gpa(self) -> int:
        return self.mapping.gfn * PAGE


@dataclass(frozen=True)
class Layout:
    sys_gpa: int
    mmio_gpa: int
    sys_slot: int  # KVM slot id of the system slot
    phys_bits: int  # guest MAXPHYADDR (CPUID 0x80000008)
    candidates: tuple[Candidate, ...]

    @property
    def data_gpas(self) -> list[int]:
        return [c.gpa for c in self.candidates]


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
    cands = []
    ordered = sorted(state.mappings, key=lambda m: (slot_of(state, m).id, m.gfn))
    if len(ordered) > guest.MAX_DATA_PAGES:
        raise Unsupported(f"{len(ordered)} initial mappings; the guest maps at most {guest.MAX_DATA_PAGES}")
    for index, m in enumerate(ordered):
        if m.level is not Level.L4K or m.root is not root or m.invalid or m.as_id:
            raise Unsupported(f"initial mapping {m.describe()}: only valid 4K {root.value} leaves in as_id 0")
        cands.append(Candidate(index, slot_of(state, m).id, m))
    return Layout(sys_gpa, mmio_gpa, nr_memslots - 1, phys_bits, tuple(cands))
