"""One vector's live run: the VM, its slots by spec id, the data pages
still believed mapped, the memory attributes as last set."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from conformance.model import GmemFlag, Kind, Level, Slot, State

from . import guest
from . import ioctl as k
from .layout import Candidate, Layout
from .trace import Leaf, SpteTrace
from .vm import GuestError, LiveVm, Region


@dataclass
class Session:
    vm: LiveVm
    layout: Layout
    cpuid: k.Cpuid2
    trace: Optional[SpteTrace] = None  # the TDP MMU's exact leaves, where tracefs offers them
    regions: dict[int, Region] = field(default_factory=dict)  # spec slot id -> live memslot
    origin: dict[int, int] = field(default_factory=dict)  # spec slot id -> GPA the guest's PTEs point at
    present: set[int] = field(default_factory=set)  # candidate indexes whose SPTE is believed present
    private: list[tuple[int, int]] = field(default_factory=list)  # GFN ranges whose attribute is private
    kinds: dict[Leaf, Kind] = field(default_factory=dict)  # traced leaves: the attribute when they appeared
    sys_sptes: int = 0  # leaf SPTEs of the system slot after a system pass (every system page)
    sys_levels: tuple[int, int, int] = (0, 0, 0)  # the same per level (4K, 2M, 1G)
    destroyed: bool = False

    def build(self, state: State) -> None:
        """Memslots for every spec slot, then the guest touches exactly the
        initial mappings' GFNs. No mappings: no vCPU, no guest, no shadow
        pages at all, as in the spec's state."""
        if self.trace is not None:
            self.trace.reset()  # a new VM: no SPTE yet
        for slot in state.slots:
            flags = (k.KVM_MEM_LOG_DIRTY_PAGES if slot.log_dirty else 0) | (k.KVM_MEM_READONLY if slot.readonly else 0)
            gmem = gmem_bits(slot) if slot.private else None
            self.regions[slot.id] = self.vm.add_region(
                slot.as_id << 16 | slot.id, slot.base_gfn * guest.PAGE, slot.npages, flags, gmem,
                huge=self.layout.blocks_in(slot.id, Level.L2M), giant=self.layout.blocks_in(slot.id, Level.L1G))
            self.origin[slot.id] = slot.base_gfn * guest.PAGE
        for lo, hi in state.private_ranges:  # before any access, so private GFNs fault from guest_memfd
            self.set_attributes(lo * guest.PAGE, (hi - lo) * guest.PAGE, k.KVM_MEMORY_ATTRIBUTE_PRIVATE)
        if not self.layout.candidates:
            return
        self.vm.start_guest(self.cpuid, self.layout.sys_slot, self.layout.sys_gpa, self.layout.mmio_gpa,
                            self.layout.small, self.layout.huge, self.layout.giant,
                            smm=any(s.as_id == 1 for s in state.slots))
        self.vm.system_pass()
        self.sys_levels = self.levels()
        self.sys_sptes = sum(self.sys_levels)
        slots = {s.id: s for s in state.slots}
        for run in runs(self.layout.candidates):
            mode = guest.MODE_READ if slots[run[0].slot].readonly else guest.MODE_WRITE
            self.vm.run_pass(run[0].va, len(run), mode, run[0].mapping.as_id)
        self.present = {c.index for c in self.layout.candidates}
        made = self.pages() - self.sys_sptes
        levels = {level: self.vm.stats.read(STAT[level]) for level in (Level.L2M, Level.L1G)}
        wanted = {level: len(self.layout.gpas(level)) for level in (Level.L2M, Level.L1G)}
        if made != len(self.present) or levels != wanted:
            raise GuestError(f"populating {len(self.present)} pages ({wanted[Level.L2M]} 2M, {wanted[Level.L1G]} 1G) "
                             f"made {made} leaf SPTEs ({levels[Level.L2M]} 2M, {levels[Level.L1G]} 1G); a huge leaf "
                             "needs a huge host page and a huge guest page")

    def set_attributes(self, address: int, size: int, attributes: int, flags: int = 0) -> None:
        """KVM_SET_MEMORY_ATTRIBUTES; on success the private ranges follow."""
        k.ioctl(self.vm.fd, k.KVM_SET_MEMORY_ATTRIBUTES, k.MemoryAttributes(address, size, attributes, flags))
        lo, hi = address // guest.PAGE, (address + size) // guest.PAGE
        kept = [(a, b) for a, b in self.private if b <= lo or a >= hi]
        cut = [(a, lo) for a, b in self.private if a < lo < b] + [(hi, b) for a, b in self.private if a < hi < b]
        added = [(lo, hi)] if attributes & k.KVM_MEMORY_ATTRIBUTE_PRIVATE else []
        self.private = sorted(kept + cut + added)

    def kind_at(self, gfn: int) -> Kind:
        return Kind.PRIVATE if any(a <= gfn < b for a, b in self.private) else Kind.SHARED

    def pages(self) -> int:
        """Present leaf SPTEs, any level (the pages_* stats count SPTEs, not GFNs)."""
        return sum(self.vm.stats.read(name) for name in STAT.values())

    def levels(self) -> tuple[int, int, int]:
        """Present leaf SPTEs per level: (4K, 2M, 1G)."""
        read = self.vm.stats.read
        return read("pages_4k"), read("pages_2m"), read("pages_1g")

    def levels_if_present(self, leaves: list[Candidate]) -> tuple[int, int, int]:
        """The levels() of the system pages and exactly these leaves."""
        count = [sum(c.mapping.level is level for c in leaves) for level in STAT]
        return tuple(a + b for a, b in zip(self.sys_levels, count))  # type: ignore[return-value]

    def is_system(self, gfn: int) -> bool:
        base = self.layout.sys_gpa // guest.PAGE
        return base <= gfn < base + self.vm.sys_npages

    def live(self, c: Candidate) -> bool:
        """The guest can still reach this candidate's GFN through its slot."""
        region = self.regions.get(c.slot)
        return region is not None and region.gpa == self.origin[c.slot]

    def region_of(self, c: Candidate) -> Region:
        return self.regions[c.slot]


STAT = {Level.L4K: "pages_4k", Level.L2M: "pages_2m", Level.L1G: "pages_1g"}


def gmem_bits(slot: Slot) -> int:
    return sum({GmemFlag.MMAP: k.GUEST_MEMFD_FLAG_MMAP, GmemFlag.INIT_SHARED: k.GUEST_MEMFD_FLAG_INIT_SHARED}[f]
               for f in slot.gmem_flags)


def runs(cands: tuple[Candidate, ...]) -> list[list[Candidate]]:
    """Consecutive 4K candidates of one slot, or one huge candidate: one populate pass each."""
    out: list[list[Candidate]] = []
    for c in cands:
        last = out[-1][-1] if out else None
        if last and last.slot == c.slot and last.size == c.size == guest.PAGE and last.va + guest.PAGE == c.va:
            out[-1].append(c)
        else:
            out.append([c])
    return out
