"""What is left after a step: the exact set of the vector's mappings still
present, from the VM's leaf-SPTE count and, when the count is ambiguous, a
read re-touch of one page at a time (live-kernel.md §3).

No root, no tracefs, no timing: pages_4k counts present leaf SPTEs exactly,
and a read of a page whose SPTE is present does not fault (pf_fixed stays),
even when dirty logging write-protected it.
"""
from __future__ import annotations

from conformance.model import Mapping

from . import guest
from . import ioctl as k
from .session import Session
from .vm import GuestError


def observe(s: Session) -> frozenset[Mapping]:
    if not s.present:
        return frozenset()  # nothing can come back: the guest only touches on request
    live = [c for c in s.layout.candidates if c.index in s.present and s.live(c)]
    guest.write_data_ptes(s.vm.sys_mem, s.layout.small, s.layout.huge)  # A/D clear: no prefetch on re-touch
    s.vm.system_pass()  # brings back only the system pages, if they went
    count = s.pages() - s.sys_sptes
    if count == 0:
        present = set()
    elif count == len(live):
        present = {c.index for c in live}
    elif count > len(live):
        raise GuestError(f"{count} leaf SPTEs present but only {len(live)} of the vector's pages are "
                         "reachable (a deleted or moved slot kept SPTEs?)")
    else:
        present = retouch(s, live)
        if len(present) != count:
            raise GuestError(f"re-touch found {len(present)} present, pages_4k says {count}")
    s.present = present
    return frozenset(c.mapping for c in s.layout.candidates if c.index in present)


def retouch(s: Session, live: list) -> set[int]:
    """One read pass per leaf: a refault means its SPTE was gone. The
    refaulted ones are zapped again (MADV_DONTNEED of the leaf's range) so
    the next step starts from the observed state."""
    present, refaulted = set(), []
    for c in live:
        before = s.vm.pf_fixed()
        s.vm.run_pass(c.va, 1, guest.MODE_READ)
        if s.vm.pf_fixed() == before:
            present.add(c.index)
        else:
            refaulted.append(c)
    for c in refaulted:  # the whole leaf's range: a 2M re-touch may have made 4K SPTEs
        k.madvise(s.region_of(c).hva(c.gpa), c.size, k.MADV_DONTNEED)
    if s.pages() - s.sys_sptes != len(present):
        raise GuestError("re-zapping the re-touched pages did not restore the observed state")
    return present
