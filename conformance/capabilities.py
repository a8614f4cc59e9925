"""Capability tags: what a vector needs from a backend, derived from its content.

A vector's `requires` is the union of these derived tags and any explicit
ones from its TOML. Backends declare the tags they meet (BackendInfo);
profile, layer and VM-type tags come from their declared lists.
"""
from __future__ import annotations

from typing import Iterable, Optional

from .model import (
    DisableQuirk, GmemFlag, GmemPunchHole, Kind, Layer, Level, Mapping, Operation, Profile, SetMemoryAttributes,
    Slot, Vm, VmType, op_layer,
)

# Tags a backend may provide beyond profile:/layer:/vm:, with what they mean.
TAGS: dict[str, str] = {
    "mmu:tdp": "the TDP MMU is on (kvm.tdp_mmu=Y)",
    "mmu:shadow": "the TDP MMU is off: shadow MMU with rmaps",
    "rmaps:nested": "rmaps present beside the TDP MMU (a nested shadow root exists)",
    "smm": "a second address space (as_id 1, SMM)",
    "tdx:gpaw48": "a TDX VM with a 48-bit guest physical address width",
    "huge:2M": "2 MiB leaf mappings",
    "huge:1G": "1 GiB leaf mappings",
    "huge:private": "a private leaf above 4K (private memory backed by huge folios)",
    "attribute-mismatch": "a leaf whose kind differs from the memory attribute of a GFN it maps: a state only a "
                          "model can hold (a fault maps only the kind the attribute names, and a conversion zaps "
                          "the other kind)",
    "invalid_roots": "mappings in roots already marked invalid",
    "private_slot": "a private-capable memslot (KVM_MEM_PRIVATE / KVM_MEM_GUEST_MEMFD)",
    "gmem:no_private_mem": "a guest_memfd memslot in a VM without private memory",
    "gmem:MMAP": "guest_memfd created with GUEST_MEMFD_FLAG_MMAP",
    "gmem:INIT_SHARED": "guest_memfd created with GUEST_MEMFD_FLAG_INIT_SHARED",
    "gmem:punch_hole": "fallocate(PUNCH_HOLE) on the private backing store",
    "memory_attributes": "changing memory attributes (KVM_SET_MEMORY_ATTRIBUTES / ENCRYPT_REG_REGION)",
    "quirk:SLOT_ZAP_ALL": "disabling KVM_X86_QUIRK_SLOT_ZAP_ALL (KVM_CAP_DISABLE_QUIRKS2)",
    "dirty_logging": "a memslot with KVM_MEM_LOG_DIRTY_PAGES",
    "readonly_slot": "a memslot with KVM_MEM_READONLY",
}


def since_version(tag: str) -> Optional[tuple[int, int]]:
    """`since:X.Y`: the vector's outcome is that of Linux X.Y and later; an
    older kernel behaves differently (docs/spec.md says how and why)."""
    head, _, value = tag.partition(":")
    major, dot, minor = value.partition(".")
    if head != "since" or not dot or not major.isdigit() or not minor.isdigit():
        return None
    return int(major), int(minor)


def known(tag: str) -> bool:
    head, _, value = tag.partition(":")
    structural = {"profile": Profile, "layer": Layer, "vm": VmType}
    return (tag in TAGS or head in structural and value in {m.value for m in structural[head]}
            or since_version(tag) is not None)


def derive(vm: Vm, slots: Iterable[Slot], mappings: Iterable[Mapping], ops: Iterable[Operation],
           private_ranges: Iterable[tuple[int, int]] = ()) -> frozenset[str]:
    """The tags a vector's content implies; nothing here depends on a backend."""
    slots, mappings, ops, private = tuple(slots), tuple(mappings), tuple(ops), tuple(private_ranges)
    tags = {f"vm:{vm.type.value}", "mmu:tdp" if vm.tdp_mmu else "mmu:shadow"}
    tags |= {f"layer:{op_layer(op).value}" for op in ops}
    if vm.tdp_mmu and vm.rmaps:
        tags.add("rmaps:nested")
    if vm.mirror and vm.gpaw == 48:
        tags.add("tdx:gpaw48")
    if not vm.slot_zap_all or any(isinstance(op, DisableQuirk) for op in ops):
        tags.add("quirk:SLOT_ZAP_ALL")
    for slot in slots:
        tags |= {"smm"} if slot.as_id == 1 else set()
        tags |= {"private_slot"} if slot.private else set()
        tags |= {"gmem:no_private_mem"} if slot.private and not vm.private_mem else set()
        tags |= {"dirty_logging"} if slot.log_dirty else set()
        tags |= {"readonly_slot"} if slot.readonly else set()
        tags |= {f"gmem:{f.value}" for f in slot.gmem_flags}
    for m in mappings:
        tags |= {"huge:2M"} if m.level is Level.L2M else set()
        tags |= {"huge:1G"} if m.level is Level.L1G else set()
        tags |= {"invalid_roots"} if m.invalid else set()
        tags |= {"huge:private"} if m.level > Level.L4K and m.kind is Kind.PRIVATE else set()
    if vm.private_mem and any(mismatched(vm, m, private) for m in mappings):
        tags.add("attribute-mismatch")
    tags |= {"gmem:punch_hole" for op in ops if isinstance(op, GmemPunchHole)}
    tags |= {"memory_attributes" for op in ops if isinstance(op, SetMemoryAttributes)}
    return frozenset(tags)


def mismatched(vm: Vm, m: Mapping, private: tuple[tuple[int, int], ...]) -> bool:
    """The leaf maps a GFN whose attribute is not the leaf's kind."""
    lo = m.gfn & ~vm.shared_bit
    hi = lo + m.level.pages
    overlap = any(a < hi and lo < b for a, b in private)
    inside = any(a <= lo and hi <= b for a, b in private)
    return overlap if m.kind is Kind.SHARED else not inside


def everything(profiles: Iterable[Profile] = tuple(Profile)) -> frozenset[str]:
    """All non-structural tags: what a complete model backend provides."""
    del profiles  # the same tag vocabulary serves both profiles
    return frozenset(TAGS) | frozenset(f"gmem:{f.value}" for f in GmemFlag)
