"""The combination space, declared once: axes, which operations they apply
to per profile, and which combinations cannot happen (with why).

Decision tables (tables.py) parse their input cells with these axes and
refuse unreachable rows; the coverage check (coverage.py) enumerates the
same space and counts rows. A combination is a tuple of (axis, label)
pairs: labels are the classes the space enumerates ("invalid" for any
unknown attribute value), while a table cell may give a concrete value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import schema
from .errors import KeyPath
from .model import (
    MEMORY_ATTRIBUTE_PRIVATE,
    V10_ATTR_PRIVATE,
    V10_ATTR_SHARED,
    VM_TYPES,
    AttrFilter,
    Profile,
    RangeFlag,
    VmType,
)

Labels = Mapping[str, str]  # axis name -> label
Combination = tuple[tuple[str, str], ...]  # ("op", name) first, then axes in declaration order

UNKNOWN_ATTRIBUTE_BIT = 1 << 4  # what a wildcard "invalid" new-attributes cell becomes


@dataclass(frozen=True)
class Axis:
    """One input dimension. `parse(value, key path)` turns a TOML cell into
    a concrete input (raising RuleViolation on bad input), `label` classifies a concrete
    input, `concrete` is what a wildcard expands each label to."""

    name: str
    doc: str
    values: tuple[str, ...]
    parse: Callable[[Any, KeyPath], Any]
    label: Callable[[Any], str]
    concrete: Callable[[str], Any]


@dataclass(frozen=True)
class Unreachable:
    """Combinations the kernel cannot produce. `when` reads labels; a rule
    applies only to combinations that have every axis in `axes`."""

    name: str
    reason: str
    kernel: str
    axes: tuple[str, ...]
    when: Callable[[Labels], bool]

    def applies(self, labels: Labels) -> bool:
        return all(a in labels for a in self.axes) and self.when(labels)


@dataclass(frozen=True)
class Space:
    profile: Profile
    ops: Mapping[str, tuple[Axis, ...]]  # decision-table operations and their axes
    unreachable: tuple[Unreachable, ...]
    scenario_only: Mapping[str, str]  # operations outside the table space -> why

    def axes(self, op: str) -> tuple[Axis, ...]:
        return self.ops[op]

    def blocked_by(self, labels: Labels) -> Unreachable | None:
        return next((rule for rule in self.unreachable if rule.applies(labels)), None)

    def combinations(self, op: str) -> Iterator[tuple[Combination, Unreachable | None]]:
        """Every combination of the op's axes, each with the rule that makes it unreachable (or None)."""
        axes = self.ops[op]
        for values in itertools.product(*(axis.values for axis in axes)):
            labels = dict(zip((a.name for a in axes), values))
            yield combination(op, axes, labels), self.blocked_by(labels)


def combination(op: str, axes: tuple[Axis, ...], labels: Labels) -> Combination:
    return (("op", op),) + tuple((a.name, labels[a.name]) for a in axes)


# ---------------------------------------------------------------- label helpers


def bool_label(value: bool) -> str:
    return "true" if value else "false"


def _set_label(values: frozenset[Any]) -> str:
    return "+".join(sorted(v.value for v in values)) or "0"


def _set_concrete(cls: type) -> Callable[[str], frozenset[Any]]:
    return lambda label: frozenset() if label == "0" else frozenset(cls(v) for v in label.split("+"))


def _set_values(cls: type) -> tuple[str, ...]:
    members = sorted(m.value for m in cls)  # type: ignore[attr-defined]
    subsets = itertools.chain.from_iterable(itertools.combinations(members, n) for n in range(len(members) + 1))
    return tuple("+".join(s) or "0" for s in subsets)


def _v10_attr_label(value: int) -> str:
    return {V10_ATTR_SHARED: "SHARED", V10_ATTR_PRIVATE: "PRIVATE"}.get(value, "invalid")


def _attributes_label(value: int) -> str:
    return {0: "0", MEMORY_ATTRIBUTE_PRIVATE: "PRIVATE"}.get(value, "invalid")


def _bool_axis(name: str, doc: str, parse: Callable[[Any, KeyPath], Any]) -> Axis:
    return Axis(name, doc, ("false", "true"), parse, bool_label, lambda label: label == "true")


def _choice_axis(name: str, doc: str, values: tuple[str, ...], parse: Callable[[Any, KeyPath], Any]) -> Axis:
    return Axis(name, doc, values, parse, str, str)


# ---------------------------------------------------------------- the axes

PRESENT_VALUES = ("none", "shared", "private", "both")
CURRENT_VALUES = ("shared", "private", "mixed")


def _cell(kind: schema.Type, wrap: Callable[[Any], Any] = lambda v: v) -> Callable[[Any, KeyPath], Any]:
    """A cell parser: the value checked against the schema type, then converted."""
    return lambda value, path: wrap(schema.parse(value, kind, path))


_BOOL = _cell(schema.Bool())


def _vm_axis(profile: Profile) -> Axis:
    types = tuple(t.value for t in VmType if t in VM_TYPES[profile])
    return _choice_axis(
        "vm", f"VM type ({', '.join(types)})", types, _cell(schema.enum_choice(VmType), lambda t: t.value)
    )


TDP_MMU = _bool_axis("tdp_mmu", "the TDP MMU is on (kvm.tdp_mmu)", _BOOL)
RMAPS = _bool_axis("rmaps", "rmap-tracked shadow pages exist (shadow MMU, or a nested root)", _BOOL)
SLOT_PRIVATE = _bool_axis("slot_private", "the slots are private-capable (KVM_MEM_PRIVATE)", _BOOL)
FLUSH_IN = _bool_axis("flush_in", "the flush the caller already owes, passed into the TDP MMU step", _BOOL)
SLOT_ZAP_ALL = _bool_axis("slot_zap_all", "KVM_X86_QUIRK_SLOT_ZAP_ALL is enabled", _BOOL)
_RANGE_FLAGS = _cell(schema.Array(schema.enum_choice(RangeFlag), distinct=True), frozenset)
_ATTR_FILTER = _cell(schema.Array(schema.enum_choice(AttrFilter), distinct=True), frozenset)
RANGE_FLAGS = Axis(
    "range_flags",
    "struct kvm_gfn_range flags",
    _set_values(RangeFlag),
    _RANGE_FLAGS,
    _set_label,
    _set_concrete(RangeFlag),
)
ATTR = Axis(
    "attr",
    "range attribute (read with SET_MEM_ATTR); invalid = neither SHARED nor PRIVATE",
    ("SHARED", "PRIVATE", "invalid"),
    _cell(schema.V10_ATTR),
    _v10_attr_label,
    {"SHARED": V10_ATTR_SHARED, "PRIVATE": V10_ATTR_PRIVATE, "invalid": 0}.__getitem__,
)
ATTR_FILTER = Axis(
    "attr_filter",
    "enum kvm_gfn_range_filter bits",
    _set_values(AttrFilter),
    _ATTR_FILTER,
    _set_label,
    _set_concrete(AttrFilter),
)
NEW_ATTRIBUTES = Axis(
    "new_attributes",
    "KVM_SET_MEMORY_ATTRIBUTES attributes; invalid = an unsupported bit",
    ("0", "PRIVATE", "invalid"),
    _cell(schema.MEMORY_ATTRIBUTES),
    _attributes_label,
    {"0": 0, "PRIVATE": MEMORY_ATTRIBUTE_PRIVATE, "invalid": UNKNOWN_ATTRIBUTE_BIT}.__getitem__,
)
CURRENT = _choice_axis(
    "current",
    "the range's attribute before the call",
    CURRENT_VALUES,
    _cell(schema.Choice("current", {c: c for c in CURRENT_VALUES})),
)
PRESENT = _choice_axis(
    "present",
    "which fixture mappings exist before the call",
    PRESENT_VALUES,
    _cell(schema.Choice("present", {p: p for p in PRESENT_VALUES})),
)

# ---------------------------------------------------------------- what cannot happen

_PRIVATE_MEM = {"SW_PROTECTED", "SNP", "TDX"}


def _has_private(labels: Labels) -> bool:
    return labels["present"] in ("private", "both")


VM_RULES = (
    Unreachable(
        "tdx-needs-tdp-mmu",
        "TDX cannot be enabled without the TDP MMU",
        "tdx_bringup() refuses when !tdp_mmu_enabled (arch/x86/kvm/vmx/tdx.c)",
        ("vm", "tdp_mmu"),
        lambda c: c["vm"] == "TDX" and c["tdp_mmu"] == "false",
    ),
    Unreachable(
        "sw-protected-needs-tdp-mmu",
        "KVM_X86_SW_PROTECTED_VM is only offered with the TDP MMU",
        "kvm_is_vm_type_supported() (arch/x86/kvm/x86.c)",
        ("vm", "tdp_mmu"),
        lambda c: c["vm"] == "SW_PROTECTED" and c["tdp_mmu"] == "false",
    ),
    Unreachable(
        "tdx-has-no-rmaps",
        "a TDX guest cannot run a nested guest, so no shadow root ever exists",
        "no nested VMX for TDX vCPUs; shadow_root_allocated stays false (arch/x86/kvm/mmu/mmu.c)",
        ("vm", "rmaps"),
        lambda c: c["vm"] == "TDX" and c["rmaps"] == "true",
    ),
    Unreachable(
        "protected-state-no-nested",
        "an SEV-ES or SNP guest cannot have VMRUN emulated, so with the "
        "TDP MMU on no nested shadow root (and no rmap) exists",
        "sev_es_validate_vmgexit() rejects VMRUN exits (arch/x86/kvm/svm/sev.c)",
        ("vm", "tdp_mmu", "rmaps"),
        lambda c: c["vm"] in ("SEV_ES", "SNP") and c["tdp_mmu"] == "true" and c["rmaps"] == "true",
    ),
    Unreachable(
        "shadow-mmu-has-rmaps",
        "with the TDP MMU off every SPTE is a shadow page tracked by rmaps",
        "kvm_memslots_have_rmaps() is true when !tdp_mmu_enabled (arch/x86/kvm/mmu.h)",
        ("tdp_mmu", "rmaps"),
        lambda c: c["tdp_mmu"] == "false" and c["rmaps"] == "false",
    ),
)

PRIVATE_MAPPING_RULES = (
    Unreachable(
        "private-needs-private-mem",
        "private mappings exist only in VMs with private memory",
        "kvm_arch_has_private_mem(): SW_PROTECTED, SNP and TDX (arch/x86/kvm/x86.c kvm_arch_init_vm)",
        ("vm", "present"),
        lambda c: c["vm"] not in _PRIVATE_MEM and _has_private(c),
    ),
)

V10_RULES = (
    Unreachable(
        "v10-private-slot-needs-tdx",
        "only a TDX VM accepts KVM_MEM_PRIVATE slots",
        "check_memory_region_flags() gates KVM_MEM_PRIVATE on kvm_arch_has_private_mem(), "
        "true only for TDX (UPM v9 8/8, TDX v10 026)",
        ("vm", "slot_private"),
        lambda c: c["vm"] != "TDX" and c["slot_private"] == "true",
    ),
    Unreachable(
        "private-needs-private-slot",
        "a slot that cannot be private never gets a private mapping",
        "kvm_mem_is_private() is false outside KVM_MEM_PRIVATE slots (UPM v9, kvm_faultin_pfn)",
        ("slot_private", "present"),
        lambda c: c["slot_private"] == "false" and _has_private(c),
    ),
)

MAINLINE_ATTRIBUTE_RULES = (
    Unreachable(
        "attributes-need-private-mem",
        "a VM without private memory supports no memory attribute, so its ranges are always shared",
        "kvm_supported_mem_attributes() is 0 unless kvm_arch_has_private_mem() (virt/kvm/kvm_main.c)",
        ("vm", "current"),
        lambda c: c["vm"] not in _PRIVATE_MEM and c["current"] != "shared",
    ),
)

# ---------------------------------------------------------------- the two spaces


def _only(rules: tuple[Unreachable, ...], *names: str) -> tuple[Unreachable, ...]:
    """The rules that can apply to a profile (tdx-v10 knows only DEFAULT and TDX)."""
    return tuple(r for r in rules if r.name in names)


_V10_VM = (_vm_axis(Profile.TDX_V10), TDP_MMU, RMAPS, SLOT_PRIVATE)
_ML_VM = (_vm_axis(Profile.MAINLINE), TDP_MMU, RMAPS)

V10_SPACE = Space(
    profile=Profile.TDX_V10,
    ops={
        "unmap_gfn_range": _V10_VM + (RANGE_FLAGS, ATTR, FLUSH_IN, PRESENT),
        "zap_gfn_range": _V10_VM + (PRESENT,),
        "zap_memslot": _V10_VM + (PRESENT,),
        "zap_all_fast": _V10_VM + (PRESENT,),
        "zap_all": _V10_VM + (PRESENT,),
    },
    unreachable=_only(VM_RULES, "tdx-needs-tdp-mmu", "tdx-has-no-rmaps", "shadow-mmu-has-rmaps") + V10_RULES,
    scenario_only={
        "event operations": "tdx-v10's decision space is its call layer; its events are the call layer "
        "plus plumbing, covered by explicit vectors in suites/event",
    },
)

MAINLINE_SPACE = Space(
    profile=Profile.MAINLINE,
    ops={
        "unmap_gfn_range": _ML_VM + (ATTR_FILTER, FLUSH_IN, PRESENT),
        "zap_gfn_range": _ML_VM + (PRESENT,),
        "zap_memslot": _ML_VM + (PRESENT,),
        "zap_all_fast": _ML_VM + (PRESENT,),
        "zap_all": _ML_VM + (PRESENT,),
        "mmu_notifier_invalidate": _ML_VM + (PRESENT,),
        "set_memory_attributes": _ML_VM + (NEW_ATTRIBUTES, CURRENT, PRESENT),
        "memslot_delete": _ML_VM + (SLOT_ZAP_ALL, PRESENT),
    },
    unreachable=VM_RULES + PRIVATE_MAPPING_RULES + MAINLINE_ATTRIBUTE_RULES,
    scenario_only={
        "gmem_punch_hole": "needs a guest_memfd slot whose flags depend on the VM type; suites/event/gmem-punch-hole",
        "memslot_move": "its errno rules need slot layouts the fixture lacks; suites/event/memslot",
        "memory_type_change": "zaps nothing in mainline; suites/event/memory-type",
        "mm_release, vm_destroy": "whole-VM teardown; suites/event/teardown",
        "disable_quirk": "a policy change; the quirk is the slot_zap_all axis of memslot_delete",
        "memslot_set_flags": "a flags-only memslot change splits or recovers huge leaves: it needs slot flags and "
        "host backing the fixture lacks; suites/event/memslot-flags, suites/live/memslot-flags",
    },
)

SPACES: dict[Profile, Space] = {Profile.TDX_V10: V10_SPACE, Profile.MAINLINE: MAINLINE_SPACE}


def rule(name: str) -> Unreachable:
    """A rule by name, wherever it is declared."""
    every = VM_RULES + PRIVATE_MAPPING_RULES + V10_RULES + MAINLINE_ATTRIBUTE_RULES
    return next(r for r in every if r.name == name)


def problem(profile: Profile, labels: Labels) -> Unreachable | None:
    """The first rule of the profile that the (partial) labels break: explicit
    vectors (rules.py) obey the same declarations as table rows."""
    return SPACES[profile].blocked_by(labels)
