"""Capability tags: what a vector needs from a backend, derived from its content.

A vector's `requires` is the union of these derived tags and any explicit
ones from its TOML. Backends declare the tags they meet (BackendInfo);
profile, layer and VM-type tags come from their declared lists.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from .model import (
    MEM_GUEST_MEMFD,
    MEM_READONLY,
    DisableQuirk,
    GmemFlag,
    GmemPunchHole,
    Kind,
    Layer,
    Level,
    Mapping,
    MemslotSetFlags,
    Operation,
    Profile,
    SetMemoryAttributes,
    Slot,
    Vm,
    VmType,
    op_layer,
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
    "attribute-mismatch": (
        "a leaf whose kind differs from the memory attribute of a GFN it maps: a state only a model can hold "
        "(a fault maps only the kind the attribute names, and a conversion zaps the other kind)"
    ),
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
    "memslot:set_flags": "KVM_SET_USER_MEMORY_REGION(2) changing only a slot's flags (KVM_MR_FLAGS_ONLY)",
    "host_huge": "huge host pages where a vector's initial host_huge puts them, not only under huge leaves",
}


# Kernel-version families. A vector requires `since:<major.minor>` when its
# expected outcome is that of Linux >= that release and older kernels differ
# (docs/spec.md §7 names the change). A backend declares `linux:<major.minor>`,
# the release whose behaviour it has; it then meets every `since:` tag up to
# that release. The mainline profile is Linux 6.18, so the models declare
# `linux:6.18` and no vector may require a later release.
VERSION_FAMILIES: dict[str, str] = {
    "since": "the outcome is that of Linux >= <major.minor>; older kernels differ (docs/spec.md §7)",
    "linux": "declared by a backend: it behaves as Linux <major.minor> (meets since: tags up to it)",
}
MAINLINE_LINUX = (6, 18)
_VERSION_TAG = re.compile(r"^(since|linux):([1-9][0-9]*)\.(0|[1-9][0-9]*)$")


def version_tag(tag: str) -> tuple[str, tuple[int, int]] | None:
    """(family, (major, minor)) of a `since:`/`linux:` tag, else None."""
    match = _VERSION_TAG.match(tag)
    return None if match is None else (match.group(1), (int(match.group(2)), int(match.group(3))))


def linux_tag(release: str) -> str | None:
    """The `linux:<major.minor>` tag of a kernel release string such as
    `6.18.44-fc-v857` (what a live backend declares), or None."""
    match = re.match(r"^([1-9][0-9]*)\.([0-9]+)", release)
    return None if match is None else f"linux:{int(match.group(1))}.{int(match.group(2))}"


def known(tag: str) -> bool:
    head, _, value = tag.partition(":")
    structural: dict[str, type[enum.Enum]] = {"profile": Profile, "layer": Layer, "vm": VmType}
    return (
        tag in TAGS
        or (head in structural and value in {m.value for m in structural[head]})
        or version_tag(tag) is not None
    )


def met(tag: str, provided: frozenset[str]) -> bool:
    """Whether a backend that provides `provided` meets `tag`: by name, or a
    `since:` tag by a declared `linux:` release at least as new."""
    if tag in provided:
        return True
    wanted = version_tag(tag)
    if wanted is None or wanted[0] != "since":
        return False
    releases = [v for v in map(version_tag, provided) if v is not None and v[0] == "linux"]
    return any(release >= wanted[1] for _, release in releases)


def derive(
    vm: Vm,
    slots: Iterable[Slot],
    mappings: Iterable[Mapping],
    ops: Iterable[Operation],
    private_ranges: Iterable[tuple[int, int]] = (),
    host_huge: Iterable[tuple[int, int, Level]] = (),
) -> frozenset[str]:
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
    for op in ops:
        if isinstance(op, MemslotSetFlags):
            tags |= {"memslot:set_flags", "dirty_logging"}
            tags |= {"readonly_slot"} if op.flags & MEM_READONLY else set()
            tags |= {"private_slot"} if op.flags & MEM_GUEST_MEMFD else set()
    for _, _, level in host_huge:
        tags |= {"host_huge"} | ({"huge:1G"} if level is Level.L1G else set())
    return frozenset(tags)


def mismatched(vm: Vm, m: Mapping, private: tuple[tuple[int, int], ...]) -> bool:
    """The leaf maps a GFN whose attribute is not the leaf's kind."""
    lo = m.gfn & ~vm.shared_bit
    hi = lo + m.level.pages
    overlap = any(a < hi and lo < b for a, b in private)
    inside = any(a <= lo and hi <= b for a, b in private)
    return overlap if m.kind is Kind.SHARED else not inside


def everything(profiles: Iterable[Profile] = tuple(Profile)) -> frozenset[str]:
    """All non-structural tags: what a complete model backend provides. A
    model of the spec behaves as the mainline profile's kernel, so it meets
    every `since:` tag a vector may carry."""
    del profiles  # the same tag vocabulary serves both profiles
    return frozenset(TAGS) | frozenset(f"gmem:{f.value}" for f in GmemFlag) | {"linux:{}.{}".format(*MAINLINE_LINUX)}
