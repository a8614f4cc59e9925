"""What is left after a step: the exact set of leaf mappings, each named by
(gfn, level, kind), never inferred from a count alone.

* TDP MMU with tracefs: the leaves folded from `kvm_tdp_mmu_spte_changed`
  (trace.py), checked against the VM's leaf count. The guest does not run,
  so observing cannot change what the next step finds.
* Otherwise (the shadow MMU, whose rmap zaps emit no tracepoint): every
  reachable leaf is read once by the guest; one that faults again was
  gone, one that does not is present, even when dirty logging
  write-protected it. On a TDP MMU (the retouch observer) each leaf has a
  pass of its own and the vCPU's pf_fixed says whether it faulted; with
  shadow paging consecutive leaves share a pass and the Accessed bits of
  the guest's own PTEs say which faulted (retouch(), checked against
  pf_fixed). A memory-fault exit means KVM maps nothing there. Leaves the
  guest cannot reach (a deleted or moved slot) are told apart only by the
  VM's leaf count. The guest runs only when some leaf may be gone: after a
  step that removed everything (a fast zap) it stays idle, so no shadow
  page is rebuilt that the spec's state does not have (live-kernel.md
  finding 13), and on the shadow MMU, when the leaf counts per level show
  that nothing went, the answer is the leaves present before.
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
    return traced(s, root) if s.trace is not None else retouched(s, root)


def traced(s: Session, root: Root) -> frozenset[Mapping]:
    assert s.trace is not None
    s.trace.drain()
    leaves = s.trace.leaves
    if sum(leaves.values()) != s.pages():
        raise TraceError(f"the trace holds {sum(leaves.values())} leaves, the VM's stats {s.pages()}")
    s.kinds = {leaf: s.kinds.get(leaf) or s.kind_at(leaf[1]) for leaf in leaves}
    return frozenset(Mapping(as_id, root, gfn, Level(level), s.kinds[(as_id, gfn, level)])
                     for as_id, gfn, level in leaves if not s.is_system(gfn))


def retouched(s: Session, root: Root = Root.SHADOW) -> frozenset[Mapping]:
    levels = s.levels()
    if not any(levels):
        s.present = set()
        return frozenset()  # nothing is left, and nothing comes back unless the guest runs
    believed = [c for c in s.layout.candidates if c.index in s.present]
    if root is Root.SHADOW and levels == s.levels_if_present(believed):
        # Nothing went: on the shadow MMU a leaf SPTE appears only when the
        # guest faults, and the guest has not run since the last observation,
        # so no level's count can have grown; every count is at its maximum
        # (the system pages plus every leaf believed present) only if no
        # leaf of either is gone. The reads below would find exactly this
        # and refault nothing (so nothing would be zapped again): they are
        # skipped, which leaves the host memory as they would.
        return frozenset(c.mapping for c in believed)
    live = [c for c in believed if s.live(c)]
    unreachable = [c for c in believed if not s.live(c)]
    guest.write_data_ptes(s.vm.sys_mem, s.layout.small, s.layout.huge, s.layout.giant)  # A/D clear: no prefetch
    s.vm.system_pass()  # brings back only the system pages, if they went
    count = s.pages() - s.sys_sptes
    present = retouch(s, live, batched=root is Root.SHADOW)
    left = count - len(present)
    if left == len(unreachable):
        present |= {c.index for c in unreachable}  # every unreachable one is there: the count says so
    elif left:
        raise GuestError(f"{left} leaf SPTEs are left that no reachable page accounts for; only "
                         f"{len(unreachable)} of the vector's leaves are unreachable (a deleted or moved slot), "
                         "so which ones cannot be told without a trace")
    s.present = present
    return frozenset(c.mapping for c in s.layout.candidates if c.index in present)


def retouch(s: Session, live: list[Candidate], batched: bool) -> set[int]:
    """Read every reachable leaf once: a refault means its SPTE was gone.
    The refaulted ones are zapped again (MADV_DONTNEED of the leaf's range)
    so the next step starts from the observed state.

    On a TDP MMU each leaf gets a pass of its own, and the vCPU's pf_fixed
    says whether it faulted. With shadow paging (`batched`) consecutive
    leaves share one pass, and which of them faulted is read from the
    guest's own page tables: their Accessed bits were cleared from the host
    before the system pass, and only KVM's page-fault walk sets a guest
    PTE's A bit (the CPU walks the SPTEs, never the guest's tables, while
    the SPTE is there; on a TDP MMU the CPU walks the guest's tables itself
    and sets every A bit, hence no batching there). So a leaf entry with A
    set after the pass is exactly a leaf that faulted. The guest touches
    the leaves in the same order as one pass each would, so KVM sees the
    same faults in the same order; each pass is checked against pf_fixed,
    which must have moved by exactly the number of A bits set."""
    before_all = s.pages()
    present, refaulted = set(), []
    mem = s.vm.sys_mem
    assert mem is not None
    for run in read_runs(live) if batched else [[c] for c in live]:
        while run:
            before = s.vm.pf_fixed()
            try:
                s.vm.run_pass(run[0].va, len(run), guest.MODE_READ, run[0].mapping.as_id)
                touched, rest = run, []
            except MemoryFault as fault:  # this leaf maps nothing (and makes nothing); the pass stopped there
                at = next((i for i, c in enumerate(run) if c.gpa <= fault.gpa < c.gpa + c.size), None)
                if at is None:
                    raise GuestError(f"{fault} in a pass over GPAs {run[0].gpa:#x}..{run[-1].gpa:#x}") from None
                touched, rest = run[:at], run[at + 1:]
            faults = s.vm.pf_fixed() - before
            if batched:
                hit = [c for c in touched if guest.accessed(mem, c.mapping.level.pages, c.va)]
                if faults != len(hit):
                    raise GuestError(f"a read pass over {len(touched)} leaves fixed {faults} faults, but the guest's "
                                     f"page tables show {len(hit)} walks")
            else:
                hit = touched if faults else []  # one leaf per pass
            present |= {c.index for c in touched} - {c.index for c in hit}
            refaulted += hit
            run = rest
    for c in refaulted:  # the whole leaf's range: a 2M re-touch may have made 4K SPTEs
        k.madvise(s.region_of(c).hva(c.gpa), c.size, k.MADV_DONTNEED)
    if s.pages() != before_all:
        raise GuestError("re-zapping the re-touched pages did not restore the observed state")
    return present


def read_runs(live: list[Candidate]) -> list[list[Candidate]]:
    """Leaves at consecutive 4K guest pages in one address space share a
    read pass; a huge leaf has one of its own (its first 4K is read)."""
    out: list[list[Candidate]] = []
    for c in live:
        last = out[-1][-1] if out else None
        if (last is not None and c.size == last.size == guest.PAGE and c.va == last.va + guest.PAGE
                and c.mapping.as_id == last.mapping.as_id):
            out[-1].append(c)
        else:
            out.append([c])
    return out
