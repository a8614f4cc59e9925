"""The TDP MMU's SPTE trace folded into the set of present leaves (no kernel
needed: the folding is checked on tracepoint text as tracefs prints it)."""
from __future__ import annotations

from conformance.contract import BackendInfo
from conformance.model import Layer, Observable, Profile
from conformance_kernel.trace import SPTE_HUGE, SPTE_PRESENT, SpteTrace, is_leaf, parse

LEAF_4K = 0x60000000AB0007 | SPTE_PRESENT
TABLE = 0x1234007 | SPTE_PRESENT  # a present non-leaf above 4K
FROZEN = 0x80000000000005A0  # SHADOW_NONPRESENT_VALUE | 0x5a0: never present


def line(gfn: int, level: int, old: int, new: int) -> bytes:
    return (f" qemu-1234  [001] ..... 12.345678: kvm_tdp_mmu_spte_changed: as id 0 gfn {gfn:x} level {level} "
            f"old_spte {old:x} new_spte {new:x}\n").encode()


class Folder(SpteTrace):
    def __init__(self) -> None:  # no tracefs: only the folding
        from collections import Counter
        self.leaves = Counter()


def test_leaf_presence_follows_the_present_and_size_bits():
    assert is_leaf(LEAF_4K, 1) and not is_leaf(TABLE, 2) and is_leaf(TABLE | SPTE_HUGE, 2)
    assert not is_leaf(FROZEN, 1) and not is_leaf(0x80000000000000, 1)


def test_changes_fold_into_present_leaves():
    f = Folder()
    f.fold(line(0x200, 1, FROZEN & ~0x5A0, LEAF_4K) + line(0x201, 1, 0x8000000000000000, LEAF_4K)
           + line(0x400, 2, 0x8000000000000000, TABLE)  # a page table appears: no leaf
           + line(0x600, 2, 0x8000000000000000, TABLE | SPTE_HUGE))
    assert dict(f.leaves) == {(0, 0x200, 1): 1, (0, 0x201, 1): 1, (0, 0x600, 2): 1}
    f.fold(line(0x200, 1, LEAF_4K, LEAF_4K & ~2)  # write-protected: still a leaf
           + line(0x201, 1, LEAF_4K, FROZEN)  # zapped through a removed page table
           + line(0x600, 2, TABLE | SPTE_HUGE, TABLE))  # split: the 2M leaf becomes a table
    assert dict(f.leaves) == {(0, 0x200, 1): 1}


def test_a_partial_line_is_not_parsed():
    assert list(parse(line(0x200, 1, 0, LEAF_4K)[:-30])) == []
    assert [(c.gfn, c.level) for c in parse(line(0x7ff, 3, 0, LEAF_4K))] == [(0x7FF, 3)]


def test_since_tags_follow_the_backend_kernel_version():
    base = dict(name="k", version="1", profiles=frozenset({Profile.MAINLINE}), layers=frozenset({Layer.EVENT}),
                vm_types=frozenset(), observables=frozenset({Observable.MAPPINGS}))
    live = BackendInfo(**base, capabilities=frozenset({"linux:6.12"}))
    assert live.unmet(frozenset({"since:6.12", "since:5.4"})) == []
    assert live.unmet(frozenset({"since:6.13"})) == [
        "since:6.13: the outcome is that of Linux >= 6.13; backend k behaves as Linux 6.12"]
    assert BackendInfo(**base).unmet(frozenset({"since:6.18"})) == [
        "since:6.18: not provided by backend k"]  # declaring no release meets no since: tag
