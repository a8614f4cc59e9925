"""One vector's live run: the VM, its slots by spec id, the data pages
still believed mapped."""
from __future__ import annotations

from dataclasses import dataclass, field
from conformance.model import GmemFlag, Slot, State

from . import guest
from . import ioctl as k
from .layout import Candidate, Layout
from .vm import GuestError, LiveVm, Region


@dataclass
class Session:
    vm: LiveVm
    layout: Layout
    cpuid: k.Cpuid2
    regions: dict[int, Region] = field(default_factory=dict)  # spec slot id -> live memslot
    origin: dict[int, int] = field(default_factory=dict)  # spec slot id -> GPA the guest's PTEs point at
    present: set[int] = field(default_factory=set)  # candidate indexes whose SPTE is believed present
    sys_sptes: int = 0  # leaf SPTEs of the system slot after a system pass (every system page)
    destroyed: bool = False

    def build(self, state: State) -> None:
        """Memslots for every spec slot, then the guest touches exactly the
        initial mappings' GFNs. No mappings: no vCPU, no guest, no shadow
        pages at all, as in the spec's state."""
        for slot in state.slots:
            flags = (k.KVM_MEM_LOG_DIRTY_PAGES if slot.log_dirty else 0) | (k.KVM_MEM_READONLY if slot.readonly else 0)
            gmem = gmem_bits(slot) if slot.private else None
            self.regions[slot.id] = self.vm.add_region(slot.id, slot.base_gfn * guest.PAGE, slot.npages, flags, gmem,
                                                       huge=self.layout.huge_in(slot.id))
            self.origin[slot.id] = slot.base_gfn * guest.PAGE
        for lo, hi in state.private_ranges:  # before any access, so private GFNs fault from guest_memfd
            attrs = k.MemoryAttributes(lo * guest.PAGE, (hi - lo) * guest.PAGE, k.KVM_MEMORY_ATTRIBUTE_PRIVATE, 0)
            k.ioctl(self.vm.fd, k.KVM_SET_MEMORY_ATTRIBUTES, attrs)
        if not self.layout.candidates:
            return
        self.vm.start_guest(self.cpuid, self.layout.sys_slot, self.layout.sys_gpa, self.layout.mmio_gpa,
                            self.layout.small, self.layout.huge)
        self.vm.system_pass()
        self.sys_sptes = self.pages()
        slots = {s.id: s for s in state.slots}
        for run in runs(self.layout.candidates):
            mode = guest.MODE_READ if slots[run[0].slot].readonly else guest.MODE_WRITE
            self.vm.run_pass(run[0].va, len(run), mode)
        self.present = {c.index for c in self.layout.candidates}
        made = self.pages() - self.sys_sptes
        huge = self.vm.stats.read("pages_2m")
        if made != len(self.present) or huge != len(self.layout.huge):
            raise GuestError(f"populating {len(self.present)} pages ({len(self.layout.huge)} of them 2M) made "
                             f"{made} leaf SPTEs ({huge} of them 2M); a 2M leaf needs a host THP")

    def pages(self) -> int:
        """Present leaf SPTEs, any level (pages_4k + pages_2m count SPTEs, not GFNs)."""
        return self.vm.stats.read("pages_4k") + self.vm.stats.read("pages_2m")

    def live(self, c: Candidate) -> bool:
        """The guest can still reach this candidate's GFN through its slot."""
        region = self.regions.get(c.slot)
        return region is not None and region.gpa == self.origin[c.slot]

    def region_of(self, c: Candidate) -> Region:
        return self.regions[c.slot]


def gmem_bits(slot: Slot) -> int:
    return sum({GmemFlag.MMAP: k.GUEST_MEMFD_FLAG_MMAP, GmemFlag.INIT_SHARED: k.GUEST_MEMFD_FLAG_INIT_SHARED}[f]
               for f in slot.gmem_flags)


def runs(cands: tuple[Candidate, ...]) -> list[list[Candidate]]:
    """Consecutive 4K candidates of one slot, or one 2M candidate: one populate pass each."""
    out: list[list[Candidate]] = []
    for c in cands:
        last = out[-1][-1] if out else None
        if last and last.slot == c.slot and last.size == c.size == guest.PAGE and last.va + guest.PAGE == c.va:
            out[-1].append(c)
        else:
            out.append([c])
    return out
