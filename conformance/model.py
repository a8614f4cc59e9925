"""The spec's vocabulary as frozen dataclasses.

Everything that crosses a boundary (loader -> backend -> verdict) is one of
these types. Nothing here knows about TOML or about any backend.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

GFN_BITS = 40  # 52-bit guest physical addresses, 4 KiB pages
PAGE_SIZE = 4096


class Profile(str, enum.Enum):
    TDX_V10 = "tdx-v10"
    MAINLINE = "mainline"


class Layer(str, enum.Enum):
    CALL = "call"
    EVENT = "event"


class VmType(str, enum.Enum):
    DEFAULT = "DEFAULT"
    SW_PROTECTED = "SW_PROTECTED"
    SEV = "SEV"
    SEV_ES = "SEV_ES"
    SNP = "SNP"
    TDX = "TDX"


# tdx-v10 predates KVM_X86_SW_PROTECTED_VM and the SEV VM types.
VM_TYPES: dict[Profile, frozenset[VmType]] = {
    Profile.TDX_V10: frozenset({VmType.DEFAULT, VmType.TDX}),
    Profile.MAINLINE: frozenset(VmType),
}
PRIVATE_MEM_VMS = frozenset({VmType.SW_PROTECTED, VmType.SNP, VmType.TDX})
PROTECTED_STATE_VMS = frozenset({VmType.SEV_ES, VmType.SNP, VmType.TDX})


class Root(str, enum.Enum):
    """Where a leaf lives: a TDP MMU root or the shadow MMU (rmap-tracked)."""

    DIRECT = "direct"
    MIRROR = "mirror"  # TDX private root ("private root" in v10, "mirror" in mainline)
    SHADOW = "shadow"


class Level(enum.IntEnum):
    L4K = 1
    L2M = 2
    L1G = 3

    @property
    def pages(self) -> int:
        return int(512 ** (self - 1))  # int ** int is typed Any: a negative exponent makes a float

    @property
    def label(self) -> str:
        return {1: "4K", 2: "2M", 3: "1G"}[self]

    @classmethod
    def from_label(cls, text: str) -> Level:
        return {"4K": cls.L4K, "2M": cls.L2M, "1G": cls.L1G}[text]


class Kind(str, enum.Enum):
    SHARED = "shared"
    PRIVATE = "private"


class Decision(str, enum.Enum):
    """Which kinds of mapping an operation's private/shared rule selects."""

    NONE = "none"
    SHARED = "shared"
    PRIVATE = "private"
    BOTH = "both"
    INDETERMINATE = "indeterminate"  # the choice reads an uninitialised value (a model of buggy code)


class GmemFlag(str, enum.Enum):
    MMAP = "MMAP"
    INIT_SHARED = "INIT_SHARED"


class RangeFlag(str, enum.Enum):
    """tdx-v10 struct kvm_gfn_range flags (TDX v10 patch 046)."""

    RESTRICTED_MEM = "RESTRICTED_MEM"
    SET_MEM_ATTR = "SET_MEM_ATTR"


class AttrFilter(str, enum.Enum):
    """mainline enum kvm_gfn_range_filter."""

    SHARED = "SHARED"
    PRIVATE = "PRIVATE"


class Quirk(str, enum.Enum):
    SLOT_ZAP_ALL = "SLOT_ZAP_ALL"


class WarnSite(str, enum.Enum):
    """WARN_ON_ONCE sites a vector may expect, named by their kernel function."""

    KVM_UNMAP_GFN_RANGE = "kvm_unmap_gfn_range"  # tdx-v10: attr neither SHARED nor PRIVATE
    FILTER_TO_ROOT_TYPES = "kvm_gfn_range_filter_to_root_types"  # mainline: empty result
    TDP_MMU_ROOT_MATCH = "tdp_mmu_root_match"  # mainline: no DIRECT/MIRROR in types
    KVM_ZAP_GFN_RANGE = "kvm_zap_gfn_range"  # end <= start


# tdx-v10 range attribute values (UPM v9 KVM_MEM_ATTR_*); anything else is invalid.
V10_ATTR_SHARED = 1
V10_ATTR_PRIVATE = 2
V10_ATTR_NAMES = {"SHARED": V10_ATTR_SHARED, "PRIVATE": V10_ATTR_PRIVATE}
# mainline KVM_MEMORY_ATTRIBUTE_PRIVATE; every other bit is unsupported.
MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
# KVM_MEM_* memslot flag bits (include/uapi/linux/kvm.h); KVM_MEM_PRIVATE (UPM v9) is bit 2 too.
MEM_LOG_DIRTY_PAGES = 1 << 0
MEM_READONLY = 1 << 1
MEM_GUEST_MEMFD = 1 << 2
MEMSLOT_FLAG_BITS = {"LOG_DIRTY_PAGES": MEM_LOG_DIRTY_PAGES, "READONLY": MEM_READONLY, "GUEST_MEMFD": MEM_GUEST_MEMFD}
ERRNO_NAMES = {"OK": 0, "EINVAL": 22, "EEXIST": 17, "ENOMEM": 12, "EFAULT": 14}
ERRNO_LABELS = {number: name for name, number in ERRNO_NAMES.items()}


class Observable(str, enum.Enum):
    MAPPINGS = "mappings"
    FLUSH = "flush"
    DECISION = "decision"
    WARNS = "warns"
    ERRNO = "errno"


CALL_OBSERVABLES = frozenset({Observable.MAPPINGS, Observable.FLUSH, Observable.DECISION, Observable.WARNS})
EVENT_OBSERVABLES = frozenset({Observable.MAPPINGS, Observable.FLUSH, Observable.ERRNO})


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class Vm:
    type: VmType
    tdp_mmu: bool
    rmaps: bool
    gpaw: int = 52  # TDX only: guest physical address width, picks the shared bit
    slot_zap_all: bool = True  # KVM_X86_QUIRK_SLOT_ZAP_ALL enabled (mainline default)

    @property
    def private_mem(self) -> bool:
        return self.type in PRIVATE_MEM_VMS

    @property
    def mirror(self) -> bool:
        return self.type is VmType.TDX

    @property
    def shared_bit(self) -> int:
        """The TDX shared ("direct") GFN bit: GPA bit 47 or 51; 0 elsewhere."""
        return 1 << (self.gpaw - 1 - 12) if self.mirror else 0

    @property
    def address_spaces(self) -> int:
        return 1 if self.private_mem else 2  # kvm_arch_nr_memslot_as_ids


@dataclass(frozen=True)
class Slot:
    id: int
    base_gfn: int
    npages: int
    as_id: int = 0
    private: bool = False  # KVM_MEM_PRIVATE (tdx-v10) / KVM_MEM_GUEST_MEMFD (mainline)
    log_dirty: bool = False
    readonly: bool = False
    gmem_flags: frozenset[GmemFlag] = frozenset()

    @property
    def end_gfn(self) -> int:
        return self.base_gfn + self.npages

    @property
    def flag_bits(self) -> int:
        """The slot's KVM_MEM_* flags as userspace passes them."""
        return (
            (MEM_LOG_DIRTY_PAGES if self.log_dirty else 0)
            | (MEM_READONLY if self.readonly else 0)
            | (MEM_GUEST_MEMFD if self.private else 0)
        )


@dataclass(frozen=True, order=True)
class Mapping:
    """A present leaf SPTE. `gfn` is the index in its tree: in a TDX direct
    root it carries the shared bit (the alias), everywhere else it is the
    memslot GFN."""

    as_id: int
    root: Root
    gfn: int
    level: Level
    kind: Kind
    invalid: bool = False  # lives in a root already marked invalid

    @property
    def end(self) -> int:
        return self.gfn + self.level.pages

    def describe(self) -> str:
        inv = " invalid" if self.invalid else ""
        return f"as{self.as_id} {self.root.value}{inv} gfn={self.gfn:#x} {self.level.label} {self.kind.value}"


@dataclass(frozen=True)
class State:
    vm: Vm
    slots: tuple[Slot, ...]
    private_ranges: tuple[tuple[int, int], ...]  # GFN ranges whose attribute is private
    mappings: frozenset[Mapping]
    # as_id-0 memslot GFN ranges backed by huge host pages of the given size
    # (2M: THP, 1G: hugetlbfs), as the vector states them; an initial 2M or
    # 1G leaf implies a host page of its own size under it besides these
    # (docs/spec.md §1.5).
    host_huge: tuple[tuple[int, int, Level], ...] = ()


# ---------------------------------------------------------------- operations
# Call layer: direct calls of MMU entry points with their internal arguments.


@dataclass(frozen=True)
class UnmapGfnRange:
    """kvm_unmap_gfn_range(); flush_in is the value its TDP MMU step receives
    (OR-ed with the rmap step's result)."""

    slot: int
    start: int
    end: int
    flush_in: bool = False
    range_flags: frozenset[RangeFlag] = frozenset()  # tdx-v10
    attr: int | None = None  # tdx-v10, meaningful with SET_MEM_ATTR
    attr_filter: frozenset[AttrFilter] = frozenset()  # mainline


@dataclass(frozen=True)
class ZapGfnRange:
    """kvm_zap_gfn_range(): the memory-type / APIC zap."""

    start: int
    end: int


@dataclass(frozen=True)
class ZapMemslot:
    """kvm_mmu_zap_memslot(): leaf zap of one whole slot."""

    slot: int


@dataclass(frozen=True)
class ZapAllFast:
    """kvm_mmu_zap_all_fast(): root invalidation."""


@dataclass(frozen=True)
class ZapAll:
    """kvm_mmu_zap_all() via kvm_arch_flush_shadow_all()."""


# Event layer: what a host can do.


@dataclass(frozen=True)
class MmuNotifierInvalidate:
    """Invalidation of the shared (host userspace) backing of [start, end) in one address space."""

    as_id: int
    start: int
    end: int


@dataclass(frozen=True)
class GmemPunchHole:
    """fallocate(PUNCH_HOLE) on the private backing of one slot, in slot GFNs."""

    slot: int
    start: int
    end: int


@dataclass(frozen=True)
class SetMemoryAttributes:
    """KVM_SET_MEMORY_ATTRIBUTES (mainline) / KVM_MEMORY_ENCRYPT_(UN)REG_REGION (tdx-v10)."""

    address: int
    size: int
    attributes: int
    flags: int = 0


@dataclass(frozen=True)
class MemslotDelete:
    slot: int


@dataclass(frozen=True)
class MemslotMove:
    slot: int
    new_base_gfn: int


@dataclass(frozen=True)
class MemslotSetFlags:
    """KVM_SET_USER_MEMORY_REGION(2) with the slot's own base and size and
    these KVM_MEM_* flags: a flags-only change (KVM_MR_FLAGS_ONLY)."""

    slot: int
    flags: int


@dataclass(frozen=True)
class DisableQuirk:
    quirk: Quirk


@dataclass(frozen=True)
class MemoryTypeChange:
    """A guest MTRR / CR0.CD change over [start, end)."""

    start: int
    end: int


@dataclass(frozen=True)
class MmRelease:
    """The mmu notifier's release: the VMM's mm goes away."""


@dataclass(frozen=True)
class VmDestroy:
    """Last reference to the VM dropped."""


CallOp = UnmapGfnRange | ZapGfnRange | ZapMemslot | ZapAllFast | ZapAll
EventOp = (
    MmuNotifierInvalidate
    | GmemPunchHole
    | SetMemoryAttributes
    | MemslotDelete
    | MemslotMove
    | MemslotSetFlags
    | DisableQuirk
    | MemoryTypeChange
    | MmRelease
    | VmDestroy
)
Operation = CallOp | EventOp

# TOML name -> operation class; the one table the loader and docs share.
OPERATIONS: dict[str, type] = {
    "unmap_gfn_range": UnmapGfnRange,
    "zap_gfn_range": ZapGfnRange,
    "zap_memslot": ZapMemslot,
    "zap_all_fast": ZapAllFast,
    "zap_all": ZapAll,
    "mmu_notifier_invalidate": MmuNotifierInvalidate,
    "gmem_punch_hole": GmemPunchHole,
    "set_memory_attributes": SetMemoryAttributes,
    "memslot_delete": MemslotDelete,
    "memslot_move": MemslotMove,
    "memslot_set_flags": MemslotSetFlags,
    "disable_quirk": DisableQuirk,
    "memory_type_change": MemoryTypeChange,
    "mm_release": MmRelease,
    "vm_destroy": VmDestroy,
}
OP_NAMES = {cls: name for name, cls in OPERATIONS.items()}
CALL_OPS = frozenset({UnmapGfnRange, ZapGfnRange, ZapMemslot, ZapAllFast, ZapAll})
MAINLINE_ONLY_OPS = frozenset({DisableQuirk, MemslotSetFlags})


def op_name(op: Operation) -> str:
    return OP_NAMES[type(op)]


def op_layer(op: Operation) -> Layer:
    return Layer.CALL if type(op) in CALL_OPS else Layer.EVENT


# ---------------------------------------------------------------- observables


@dataclass(frozen=True)
class Observables:
    """One step's observables. As an expectation, None means "not asserted";
    as an observation, None means "this backend cannot see it"."""

    mappings: frozenset[Mapping] | None = None
    flush: bool | None = None
    decision: Decision | None = None
    warns: frozenset[WarnSite] | None = None
    errno: int | None = None
    # An observation only: observables left None in this step, each with why
    # ("mappings", "the VM is gone"). The verdict ignores exactly these.
    withheld: tuple[tuple[str, str], ...] = ()

    def asserted(self) -> tuple[Observable, ...]:
        return tuple(o for o in Observable if getattr(self, o.value) is not None)

    def withheld_reason(self, what: Observable) -> str | None:
        return next((why for name, why in self.withheld if name == what.value), None)


@dataclass(frozen=True)
class Step:
    op: Operation
    expect: Observables
    line: int = 0


@dataclass(frozen=True)
class Flag:
    """Why a vector exists (Wycheproof-style note)."""

    name: str
    description: str
    bug_class: str
    kernel: tuple[str, ...] = ()
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vector:
    id: str  # "<file stem>::<local id>", stable
    description: str
    profiles: frozenset[Profile]
    requires: frozenset[str]  # capability tags, explicit and derived
    flags: tuple[Flag, ...]
    state: State
    steps: tuple[Step, ...]
    path: str = ""
    line: int = 0
    row: tuple[tuple[str, str], ...] = ()  # decision-table combination (axes.Combination); () if explicit
    pins: str = ""  # the id of the vector this one is a live variant of: it pins the same rule with what a
    # kernel can build (4K private leaves, no 1G leaf); a pinning row vector does not count as covering its row

    @property
    def layers(self) -> frozenset[Layer]:
        return frozenset(op_layer(s.op) for s in self.steps)


@dataclass(frozen=True)
class Observation:
    """What a backend saw, one entry per step, in the spec's vocabulary.
    `notes` are remarks for the reader; an observable is excused only by its
    step's `withheld` entry."""

    steps: tuple[Observables, ...]
    notes: tuple[str, ...] = field(default=())
