"""What is left after a step: the exact set of leaf mappings, each named by
(gfn, level, kind), never inferred from a count alone.

* TDP MMU with tracefs: the leaves folded from `kvm_tdp_mmu_spte_changed`
  (trace.py), checked against the VM's leaf count. The guest does not run,
  so observing cannot change what the next step finds.
* Otherwise (the shadow MMU, whose rmap zaps emit no tracepoint): every
  reachable leaf is read once in its own guest pass; one that faults again
  was gone (pf_fixed moves), one that does not is present, even when dirty
  logging write-protected it. A memory-fault exit means KVM maps nothing
  there. Leaves the guest cannot reach (a deleted or moved slot) are told
  apart only by the VM's leaf count. The guest runs only when some leaf is
  left: after a step that removed everything (a fast zap) it stays idle, so
  no shadow page is rebuilt that the spec's state does not have
  (live-kernel.md finding 13).
"""
from __future__ import annotations

from conformance.model import Level, Mapping, Root

from . import guest
from . import ioctl as k
from .layout import Candidate
from .session import Session
from .trace import TraceError
from .vm import GuestError, MemoryFault


def observe(s: Session, root: Root) -> frozenset[Mapping]:
    return traced(s, root) if s.trace is not None else retouched(s)


def traced(s: Session, root: Root) -> frozenset[Mapping]:
    assert s.trace is not None
    s.trace.drain()
    leaves = s.trace.leaves
    if sum(leaves.values()) != s.pages():
        raise TraceError(f"the trace holds {sum(leaves.values())} leaves, the VM's stats {s.pages()}")
    s.kinds = {leaf: s.kinds.get(leaf) or s.kind_at(leaf[1]) for leaf in leaves}
    return frozenset(Mapping(as_id, root, gfn, Level(level), s.kinds[(as_id, gfn, level)])
                     for as_id, gfn, level in leaves if not s.is_system(gfn))


def retouched(s: Session) -> frozenset[Mapping]:
    if s.pages() == 0:
        s.present = set()
        return frozenset()  # nothing is left, and nothing comes back unless the guest runs
    believed = [c for c in s.layout.candidates if c.index in s.present]
    live = [c for c in believed if s.live(c)]
    unreachable = [c for c in believed if not s.live(c)]
    guest.write_data_ptes(s.vm.sys_mem, s.layout.small, s.layout.huge, s.layout.giant)  # A/D clear: no prefetch
    s.vm.system_pass()  # brings back only the system pages, if they went
    count = s.pages() - s.sys_sptes
    present = retouch(s, live)
    left = count - len(present)
    if left == len(unreachable):
        present |= {c.index for c in unreachable}  # every unreachable one is there: the count says so
    elif left:
        raise GuestError(f"{left} leaf SPTEs are left that no reachable page accounts for; only "
                         f"{len(unreachable)} of the vector's leaves are unreachable (a deleted or moved slot), "
                         "so which ones cannot be told without a trace")
    s.present = present
    return frozenset(c.mapping for c in s.layout.candidates if c.index in present)


def retouch(s: Session, live: list[Candidate]) -> set[int]:
    """One read pass per leaf: a refault means its SPTE was gone. The
    refaulted ones are zapped again (MADV_DONTNEED of the leaf's range) so
    the next step starts from the observed state."""
    before_all = s.pages()
    present, refaulted = set(), []
    for c in live:
        before = s.vm.pf_fixed()
        try:
            s.vm.run_pass(c.va, 1, guest.MODE_READ, c.mapping.as_id)
        except MemoryFault:
            continue  # no leaf, and none made
        if s.vm.pf_fixed() == before:
            present.add(c.index)
        else:
            refaulted.append(c)
    for c in refaulted:  # the whole leaf's range: a 2M re-touch may have made 4K SPTEs
        k.madvise(s.region_of(c).hva(c.gpa), c.size, k.MADV_DONTNEED)
    if s.pages() != before_all:
        raise GuestError("re-zapping the re-touched pages did not restore the observed state")
    return present
