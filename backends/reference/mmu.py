"""The reference MMU's state: leaves per root, slots, attributes, and the
primitives every rule is built from. No profile-specific policy lives here."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Iterator, NamedTuple, Optional

from conformance.model import Decision, Level, Mapping, Root, Slot, State, WarnSite


class RootKey(NamedTuple):
    as_id: int
    root: Root
    invalid: bool


@dataclass(frozen=True)
class Outcome:
    """What one operation returns besides the mappings it leaves."""

    flush: Optional[bool] = None  # returned flush (kvm_unmap_gfn_range) or None: use remote flushes
    decision: Optional[Decision] = None
    errno: int = 0


class Mmu:
    """A mutable working copy of a vector's initial State for one run."""

    def __init__(self, state: State) -> None:
        self.vm = state.vm
        self.slots: dict[int, Slot] = {s.id: s for s in state.slots}
        self.private: set[tuple[int, int]] = set(state.private_ranges)
        self.leaves: dict[RootKey, set[Mapping]] = {}
        for m in state.mappings:
            self.leaves.setdefault(RootKey(m.as_id, m.root, m.invalid), set()).add(m)
        self.warns: set[WarnSite] = set()
        self.remote_flushes = 0
        # Shadow page tables exist below the roots once a shadow leaf has
        # existed; leaf zaps leave them, only a zap of every shadow page
        # removes them (spec §5.6).
        self.shadow_tables = any(m.root is Root.SHADOW for m in state.mappings)
        # Host pages (spec §1.5): the vector's 2M ranges in as_id 0, and a
        # page of its own size under every initial huge leaf. Fixed: zaps
        # change SPTEs, not the host's memory.
        self.host_pages = {(0, gfn, level) for lo, hi, level in state.host_huge for gfn in range(lo, hi, level.pages)}
        self.host_pages |= {(m.as_id, self.memslot_gfn(m), m.level) for m in state.mappings if m.level > Level.L4K}
        # Shadow leaves in direct shadow pages: those an eager split made
        # (shadow_mmu_split_huge_page); initial shadow leaves map guest pages
        # of their own size (spec §5.7).
        self.direct_shadow: set[Mapping] = set()

    # -- observation
    def mappings(self) -> frozenset[Mapping]:
        return frozenset(m for leaves in self.leaves.values() for m in leaves)

    def warn(self, site: WarnSite) -> None:
        self.warns.add(site)

    def flush_remote_tlbs(self) -> None:
        """kvm_flush_remote_tlbs(): counted, since flushes are an observable."""
        self.remote_flushes += 1

    # -- roots
    def tdp_roots(self, as_id: Optional[int], kinds: Iterable[Root], invalid: bool) -> Iterator[RootKey]:
        """Existing TDP roots of the given kinds, valid ones always (the VM
        has run, so its vCPUs loaded them), invalid ones when they hold
        leaves. Mirror roots come after direct ones, as in the kernel's
        newest-first list where the private root is allocated first."""
        if not self.vm.tdp_mmu:
            return
        spaces = range(self.vm.address_spaces) if as_id is None else (as_id,)
        wanted = [k for k in (Root.DIRECT, Root.MIRROR) if k in set(kinds)]
        for space in spaces:
            for kind in wanted:
                if kind is Root.MIRROR and not self.vm.mirror:
                    continue
                if invalid and self.leaves.get(RootKey(space, kind, True)):
                    yield RootKey(space, kind, True)
                yield RootKey(space, kind, False)

    def kinds_in(self, roots: Iterable[Root]) -> Decision:
        """Which kinds of mapping the given TDP root kinds can hold in this VM."""
        roots = set(roots)
        if not self.vm.mirror:
            return Decision.BOTH if Root.DIRECT in roots else Decision.NONE
        shared, private = Root.DIRECT in roots, Root.MIRROR in roots
        return {(True, True): Decision.BOTH, (True, False): Decision.SHARED,
                (False, True): Decision.PRIVATE, (False, False): Decision.NONE}[(shared, private)]

    # -- leaf zaps
    def tree_range(self, root: Root, start: int, end: int) -> tuple[int, int]:
        """Memslot GFNs -> indices in the tree: a TDX direct root is indexed
        with the shared bit set (the alias); every other tree is not."""
        bit = self.vm.shared_bit if root is Root.DIRECT else 0
        return start | bit, end | bit

    def zap_leafs(self, key: RootKey, start: int, end: int) -> bool:
        """Remove every leaf of one root overlapping [start, end) memslot GFNs;
        a huge leaf touched anywhere goes whole. Cost: leaves present."""
        lo, hi = self.tree_range(key.root, start, end)
        leaves = self.leaves.get(key, set())
        hit = {m for m in leaves if m.gfn < hi and lo < m.end}
        leaves -= hit
        return bool(hit)

    def zap_root(self, key: RootKey) -> bool:
        """Tear one root down whole."""
        return bool(self.leaves.pop(key, None))

    def zap_rmaps(self, slot: Slot, start: int, end: int) -> bool:
        """__kvm_rmap_zap_gfn_range: the slot's shadow leaves in range, at every
        level; rmaps know nothing of private/shared, so no filter applies."""
        if not self.vm.rmaps:
            return False
        lo, hi = max(start, slot.base_gfn), min(end, slot.end_gfn)
        return lo < hi and self.zap_leafs(RootKey(slot.as_id, Root.SHADOW, False), lo, hi)

    def zap_all_shadow(self) -> bool:
        """Every shadow page zapped (kvm_mmu_zap_all / obsolete pages); the
        commit flushes when there were page tables below the roots, with or
        without leaves left in them (kvm_mmu_commit_zap_page)."""
        keys = [k for k in self.leaves if k.root is Root.SHADOW]
        had_leaves = any([self.zap_root(k) for k in keys])
        had_tables, self.shadow_tables = self.shadow_tables or had_leaves, False
        return had_tables

    # -- huge pages
    def memslot_gfn(self, m: Mapping) -> int:
        """A leaf's memslot GFN: a TDX direct-root index carries the shared bit."""
        return m.gfn & ~self.vm.shared_bit if m.root is Root.DIRECT else m.gfn

    def host_level(self, as_id: int, gfn: int) -> Level:
        """host_pfn_mapping_level: the size of the host page backing a GFN."""
        for level in (Level.L1G, Level.L2M):
            if (as_id, gfn - gfn % level.pages, level) in self.host_pages:
                return level
        return Level.L4K

    def split_to_4k(self, key: RootKey, start: int, end: int) -> set[Mapping]:
        """Replace every huge leaf of a root within [start, end) memslot GFNs
        by 4K leaves of its kind; returns the new leaves."""
        lo, hi = self.tree_range(key.root, start, end)
        leaves = self.leaves.get(key, set())
        huge = {m for m in leaves if m.level > Level.L4K and lo <= m.gfn and m.end <= hi}
        small = {Mapping(m.as_id, m.root, gfn, Level.L4K, m.kind, m.invalid)
                 for m in huge for gfn in range(m.gfn, m.end)}
        leaves -= huge
        leaves |= small
        return small

    def leaves_in(self, key: RootKey, start: int, end: int) -> list[Mapping]:
        """The leaves of a root that start inside [start, end) memslot GFNs."""
        lo, hi = self.tree_range(key.root, start, end)
        return [m for m in self.leaves.get(key, ()) if lo <= m.gfn < hi]

    def collapse(self, key: RootKey, inside: list[Mapping], gfn: int, level: Level) -> None:
        """Replace these leaves of a root (all inside the `level` block at
        tree index `gfn`) by one leaf of that level, of the kind of the lowest."""
        leaves = self.leaves[key]
        leaves -= set(inside)
        lowest = min(inside, key=lambda m: m.gfn)
        leaves.add(Mapping(lowest.as_id, lowest.root, gfn, level, lowest.kind, lowest.invalid))

    # -- slots and attributes
    def slots_overlapping(self, start: int, end: int, as_id: Optional[int] = None) -> list[Slot]:
        return [s for s in sorted(self.slots.values(), key=lambda s: (s.as_id, s.base_gfn))
                if (as_id is None or s.as_id == as_id) and s.base_gfn < end and start < s.end_gfn]

    def range_is_private(self, start: int, end: int) -> bool:
        covered = start
        for lo, hi in sorted(self.private):
            if lo <= covered < hi:
                covered = hi
        return covered >= end

    def range_is_shared(self, start: int, end: int) -> bool:
        return not any(lo < end and start < hi for lo, hi in self.private)

    def set_private(self, start: int, end: int, private: bool) -> None:
        """Store new attributes: cut [start, end) out of the private ranges,
        then add it back if it became private."""
        kept: set[tuple[int, int]] = set()
        for lo, hi in self.private:
            kept |= {(lo, min(hi, start))} if lo < start else set()
            kept |= {(max(lo, end), hi)} if hi > end else set()
        self.private = {r for r in kept if r[0] < r[1]} | ({(start, end)} if private else set())

    def move_slot(self, slot: Slot, new_base: int) -> None:
        self.slots[slot.id] = replace(slot, base_gfn=new_base)

    def slot_overlaps_other(self, slot: Slot, new_base: int) -> bool:
        end = new_base + slot.npages
        return any(s.id != slot.id and s.as_id == slot.as_id and s.base_gfn < end and new_base < s.end_gfn
                   for s in self.slots.values())
