"""TOML suite files -> model.Vector, validated, with file:line errors.

Parsing and checking are split on purpose: the `get_*` helpers turn one TOML
value into a Python value (types, enums, ranges), the `check_*` functions
validate model objects against each other. Decision tables (tables.py)
build model objects directly and reuse the `check_*` functions, so a table
row obeys exactly the rules an explicit [[vector]] does.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Optional, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from . import axes, capabilities
from .lines import Key, LineIndex, render, toml_error_position
from .model import (
    ERRNO_NAMES, GFN_BITS, MAINLINE_ONLY_OPS, MEM_LOG_DIRTY_PAGES, MEMSLOT_FLAG_BITS, MEMORY_ATTRIBUTE_PRIVATE,
    OPERATIONS, PROTECTED_STATE_VMS,
    V10_ATTR_NAMES, VM_TYPES, AttrFilter, Decision, Flag, GmemFlag, GmemPunchHole, Kind, Layer,
    Level, Mapping, MemoryTypeChange, MemslotDelete, MemslotMove, MemslotSetFlags, MmuNotifierInvalidate, Observables,
    Operation, Profile, Quirk, RangeFlag, Root, SetMemoryAttributes, Slot, State, Step, UnmapGfnRange, Vector, ZapGfnRange,
    Vm, VmType, WarnSite, op_layer, op_name,
)

FORMAT = 1
REGISTRY_NAME = "flags.toml"
GFN_LIMIT = 1 << GFN_BITS
U64_MAX = (1 << 64) - 1
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
BUG_CLASSES = (
    "basic", "edge-case", "over-zap", "under-zap", "lost-flush", "spurious-flush", "uninitialised",
    "wrong-root", "alias", "huge-page", "errno", "warn",
)
SLOT_FLAGS = ("LOG_DIRTY_PAGES", "READONLY", "GUEST_MEMFD", "PRIVATE")
PRIVATE_SLOT_FLAGS = frozenset({"GUEST_MEMFD", "PRIVATE"})  # mainline / tdx-v10 spelling
LEVELS = {"4K": Level.L4K, "2M": Level.L2M, "1G": Level.L1G}
MEMORY_ATTRIBUTES = {"PRIVATE": MEMORY_ATTRIBUTE_PRIVATE}

TOP_KEYS = ("suite", "vector", "table")
SUITE_KEYS = ("format", "description", "flags")
FLAG_KEYS = ("description", "bug_class", "kernel", "links")
VECTOR_KEYS = ("id", "description", "profiles", "flags", "requires", "pins", "vm", "slot", "initial", "step")
VECTOR_REQUIRED = ("id", "description", "profiles", "flags", "vm", "step")
VM_KEYS = ("type", "tdp_mmu", "rmaps", "gpaw", "slot_zap_all")
SLOT_KEYS = ("id", "as_id", "base_gfn", "npages", "flags", "gmem_flags")
INITIAL_KEYS = ("private", "host_huge", "mappings")
MAPPING_KEYS = ("root", "gfn", "level", "kind", "as_id", "invalid", "count")
EXPECT_KEYS = ("mappings", "flush", "decision", "warns", "errno")
EXPECT_LAYER = {"decision": Layer.CALL, "warns": Layer.CALL, "errno": Layer.EVENT}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # "no default": the key must be present
_MISSING: Any = object()  # a Node whose key is absent


class LoadError(Exception):
    """A problem in a suite or registry file, located by line and key path."""

    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        super().__init__(f"{path}:{line}: {key}: {message}")

    def __reduce__(self):  # keep it picklable (xdist workers send errors back)
        return type(self), (self.path, self.line, self.key, self.message)


@dataclass(frozen=True)
class SuiteFile:
    path: str
    description: str
    vectors: tuple[Vector, ...]


@dataclass(frozen=True)
class Source:
    path: str
    index: LineIndex


@dataclass(frozen=True)
class Node:
    """One TOML value plus where it came from; `fail` turns a problem into a LoadError."""

    src: Source
    path: tuple[Key, ...]
    value: Any = _MISSING
    prefix: str = ""  # context for messages, e.g. "table 'x' row 3: "

    def at(self, key: Key) -> "Node":
        value = _MISSING
        if isinstance(self.value, dict) and isinstance(key, str):
            value = self.value.get(key, _MISSING)
        elif isinstance(self.value, list) and isinstance(key, int) and 0 <= key < len(self.value):
            value = self.value[key]
        return Node(self.src, self.path + (key,), value, self.prefix)

    @property
    def missing(self) -> bool:
        return self.value is _MISSING

    @property
    def line(self) -> int:
        return self.src.index.line(self.path)

    def fail(self, message: str) -> NoReturn:
        raise LoadError(self.src.path, self.line, render(self.path) or "<root>", self.prefix + message)


@dataclass(frozen=True)
class FileCtx:
    """What every vector of one file shares."""

    path: str
    stem: str
    flags: dict[str, Flag]


# ---------------------------------------------------------------- value helpers


def _hex(value: int) -> str:
    return f"{value:#x}" if abs(value) > 9 else str(value)


def _span(start: int, end: int) -> str:
    return f"[{_hex(start)}, {_hex(end)})"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    return {list: "an array", dict: "a table", float: f"float {value}"}.get(type(value), type(value).__name__)


def _present(node: Node, key: Optional[str], default: Any) -> Optional[Node]:
    """The child node, or None when it is absent and has a default."""
    child = node if key is None else node.at(key)
    if child.missing:
        if default is REQUIRED:
            child.fail("missing required key")
        return None
    return child


def expect_table(node: Node) -> None:
    if not isinstance(node.value, dict):
        node.fail(f"expected a table, got {_type_name(node.value)}")


def check_keys(node: Node, allowed: Sequence[str], required: Iterable[str] = ()) -> None:
    """The node is a table with only `allowed` keys and all `required` ones."""
    expect_table(node)
    for key in node.value:
        if key not in allowed:
            node.at(key).fail(f"unknown key {key!r}; allowed keys: {', '.join(allowed)}")
    for key in required:
        _present(node, key, REQUIRED)


def get_int(node: Node, key: Optional[str] = None, default: Any = REQUIRED,
            lo: Optional[int] = 0, hi: Optional[int] = None) -> Any:
    child = _present(node, key, default)
    if child is None:
        return default
    value = child.value
    if isinstance(value, bool) or not isinstance(value, int):  # TOML true is not 1
        child.fail(f"expected an integer, got {_type_name(value)}")
    if lo is not None and value < lo:
        child.fail(f"{_hex(value)} is below the minimum {_hex(lo)}")
    if hi is not None and value > hi:
        child.fail(f"{_hex(value)} is above the maximum {_hex(hi)}")
    return value


def get_bool(node: Node, key: Optional[str] = None, default: Any = REQUIRED) -> Any:
    child = _present(node, key, default)
    if child is None:
        return default
    if not isinstance(child.value, bool):
        child.fail(f"expected a boolean (true/false), got {_type_name(child.value)}")
    return child.value


def get_str(node: Node, key: Optional[str] = None, default: Any = REQUIRED) -> Any:
    child = _present(node, key, default)
    if child is None:
        return default
    if not isinstance(child.value, str):
        child.fail(f"expected a string, got {_type_name(child.value)}")
    return child.value


def get_text(node: Node, key: str) -> str:
    """A required one-line, non-empty description."""
    text = get_str(node, key)
    if not text.strip() or "\n" in text:
        node.at(key).fail("must be a non-empty single line")
    return text


def get_id(node: Node, key: str = "id") -> str:
    ident = get_str(node, key)
    if not ID_PATTERN.match(ident):
        node.at(key).fail(f"bad id {ident!r}: must match {ID_PATTERN.pattern}")
    return ident


def get_choice(node: Node, key: Optional[str], table: dict[str, Any], what: str, default: Any = REQUIRED) -> Any:
    """A string naming one entry of `table`."""
    name = get_str(node, key, default)
    child = node if key is None else node.at(key)
    if child.missing:
        return default
    if name not in table:
        child.fail(f"unknown {what} {name!r}; allowed: {', '.join(table)}")
    return table[name]


def members(cls: type) -> dict[str, Any]:
    return {member.value: member for member in cls}  # type: ignore[attr-defined]


def get_enum(node: Node, key: Optional[str], cls: type, default: Any = REQUIRED) -> Any:
    return get_choice(node, key, members(cls), cls.__name__, default)


def get_list(node: Node, key: Optional[str] = None, default: Any = REQUIRED) -> Any:
    """An array, as one Node per element."""
    child = _present(node, key, default)
    if child is None:
        return default
    if not isinstance(child.value, list):
        child.fail(f"expected an array, got {_type_name(child.value)}")
    return [child.at(i) for i in range(len(child.value))]


def get_names(node: Node, key: Optional[str], table: dict[str, Any], what: str, default: Any = REQUIRED) -> Any:
    """An array of distinct names from `table`, as a tuple of their values."""
    items = get_list(node, key, default)
    if items is default and default is not REQUIRED:
        return default
    values = []
    for item in items:
        value = get_choice(item, None, table, what)
        if value in values:
            item.fail(f"duplicate {what} {item.value!r}")
        values.append(value)
    return tuple(values)


def get_enum_list(node: Node, key: Optional[str], cls: type, default: Any = REQUIRED) -> Any:
    return get_names(node, key, members(cls), cls.__name__, default)


def get_strings(node: Node, key: str, default: Any = REQUIRED) -> Any:
    items = get_list(node, key, default)
    return default if items is default else tuple(get_str(item) for item in items)


def get_profiles(node: Node) -> frozenset[Profile]:
    profiles = get_enum_list(node, "profiles", Profile)
    if not profiles:
        node.at("profiles").fail(f"must list at least one profile; allowed: {', '.join(members(Profile))}")
    return frozenset(profiles)


def get_flag_refs(node: Node, key: str, registry: dict[str, Flag], required: bool = True) -> tuple[Flag, ...]:
    names = get_strings(node, key, REQUIRED if required else ())
    if required and not names:
        node.at(key).fail("must name at least one flag")
    for i, name in enumerate(names):
        if name not in registry:
            node.at(key).at(i).fail(f"unknown flag {name!r}; define it in {REGISTRY_NAME} or [suite.flags]")
    if len(set(names)) != len(names):
        node.at(key).fail("lists a flag twice")
    return tuple(registry[name] for name in names)


def get_requires(node: Node, profiles: frozenset[Profile]) -> frozenset[str]:
    tags = get_strings(node, "requires", ())
    for i, tag in enumerate(tags):
        if not capabilities.known(tag):
            node.at("requires").at(i).fail(
                f"unknown capability tag {tag!r}; known: {', '.join(capabilities.TAGS)}, profile:*, layer:*, vm:*, "
                f"since:<major.minor>")
        check_version_tag(node.at("requires").at(i), tag, profiles)
    return frozenset(tags)


def check_version_tag(node: Node, tag: str, profiles: frozenset[Profile]) -> None:
    """`since:` describes mainline kernels up to the profile's own release;
    `linux:` is what a backend declares, never what a vector requires."""
    version = capabilities.version_tag(tag)
    if version is None:
        return
    family, release = version
    if family == "linux":
        node.fail(f"{tag!r} is what a backend declares (the kernel it behaves as); a vector requires since:<x.y>")
    if profiles != {Profile.MAINLINE}:
        node.fail(f"{tag!r} names a mainline kernel release; it needs profiles = [\"mainline\"]")
    if release > capabilities.MAINLINE_LINUX:
        profile_release = ".".join(map(str, capabilities.MAINLINE_LINUX))
        node.fail(f"{tag!r} is newer than the mainline profile's Linux {profile_release}")


# A spec never intends an indeterminate choice; only a backend may report one.
EXPECTABLE_DECISIONS = {d.value: d for d in Decision if d is not Decision.INDETERMINATE}


def get_decision(node: Node, key: Optional[str], default: Any = REQUIRED) -> Any:
    return get_choice(node, key, EXPECTABLE_DECISIONS, "decision", default)


def v10_attr(node: Node) -> int:
    """tdx-v10 range attribute: "SHARED", "PRIVATE" or a raw integer (invalid values are WARN cases)."""
    if isinstance(node.value, str):
        return get_choice(node, None, V10_ATTR_NAMES, "attr")
    return get_int(node, hi=U64_MAX)


def get_bits(node: Node, names: dict[str, int], what: str, hi: int) -> int:
    """A bit mask: a list of names from `names`, or a raw integer up to `hi`
    (which may carry bits no name has)."""
    if isinstance(node.value, list):
        bits = 0
        for bit in get_names(node, None, names, what):
            bits |= bit
        return bits
    return get_int(node, hi=hi)


def memory_attributes(node: Node) -> int:
    return get_bits(node, MEMORY_ATTRIBUTES, "memory attribute", U64_MAX)


def memslot_flags(node: Node) -> int:
    """KVM_MEM_* flags (u32); any bit without a name is an unknown flag."""
    return get_bits(node, MEMSLOT_FLAG_BITS, "memslot flag", (1 << 32) - 1)


def get_errno(node: Node) -> int:
    if isinstance(node.value, str):
        return get_choice(node, None, ERRNO_NAMES, "errno")
    return get_int(node)


# ---------------------------------------------------------------- flags


def parse_flag_table(node: Node) -> dict[str, Flag]:
    """[flags.<name>] / [suite.flags.<name>] entries."""
    if node.missing:
        return {}
    expect_table(node)
    flags = {}
    for name in node.value:
        entry = node.at(name)
        if not ID_PATTERN.match(name):
            entry.fail(f"bad flag name {name!r}: must match {ID_PATTERN.pattern}")
        check_keys(entry, FLAG_KEYS, ("description", "bug_class", "kernel"))
        flags[name] = Flag(
            name=name,
            description=get_text(entry, "description"),
            bug_class=get_choice(entry, "bug_class", {c: c for c in BUG_CLASSES}, "bug_class"),
            kernel=get_strings(entry, "kernel"),
            links=get_strings(entry, "links", ()),
        )
    return flags


def find_registry(suite_path: str) -> Optional[str]:
    """The nearest flags.toml at or above the suite file's directory."""
    start = Path(os.path.abspath(suite_path)).parent
    for directory in (start, *start.parents):
        candidate = directory / REGISTRY_NAME
        if candidate.is_file():
            return str(candidate) if os.path.isabs(suite_path) else os.path.relpath(candidate)
    return None


def _load_registry(path: str) -> dict[str, Flag]:
    src, doc = _read(path)
    root = Node(src, (), doc)
    check_keys(root, ("flags",))
    return parse_flag_table(root.at("flags"))


def _registry(path: str) -> dict[str, Flag]:
    """The registry is shared by every file under it: parse it once per version."""
    stat = os.stat(path)
    return dict(_registry_at(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _registry_at(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, Flag], ...]:
    del mtime_ns, size  # part of the cache key only
    return tuple(_load_registry(path).items())


def _flags_for(src: Source, doc: dict) -> dict[str, Flag]:
    registry_path = find_registry(src.path)
    registry = _registry(registry_path) if registry_path else {}
    local_node = Node(src, (), doc).at("suite").at("flags")
    local = parse_flag_table(local_node)
    for name in local:
        if name in registry:
            local_node.at(name).fail(f"flag {name!r} is already defined in {registry_path}")
    return {**registry, **local}


def load_flags(suite_path: str | os.PathLike) -> dict[str, Flag]:
    """The flags a suite file may use: the nearest flags.toml plus its own [suite.flags]."""
    src, doc = _read(suite_path)
    return _flags_for(src, doc)


# ---------------------------------------------------------------- VM and slots


def _vm(node: Node, profiles: frozenset[Profile]) -> Vm:
    check_keys(node, VM_KEYS, ("type", "tdp_mmu"))
    vm_type = get_enum(node, "type", VmType)
    tdp_mmu = get_bool(node, "tdp_mmu")
    if vm_type is not VmType.TDX and not node.at("gpaw").missing:
        node.at("gpaw").fail("gpaw is only meaningful for TDX VMs")
    gpaw = get_int(node, "gpaw", 52)
    if gpaw not in (48, 52):
        node.at("gpaw").fail(f"gpaw must be 48 or 52, got {gpaw}")
    vm = Vm(vm_type, tdp_mmu, get_bool(node, "rmaps", not tdp_mmu), gpaw, get_bool(node, "slot_zap_all", True))
    check_vm(node, vm, profiles)
    return vm


def check_vm(node: Node, vm: Vm, profiles: frozenset[Profile]) -> None:
    for profile in sorted(profiles):
        if vm.type not in VM_TYPES[profile]:
            allowed = ", ".join(t.value for t in VmType if t in VM_TYPES[profile])
            node.at("type").fail(f"VM type {vm.type.value} does not exist in profile {profile.value}; allowed: {allowed}")
    labels = {"vm": vm.type.value, "tdp_mmu": axes.bool_label(vm.tdp_mmu), "rmaps": axes.bool_label(vm.rmaps)}
    for profile in sorted(profiles):
        rule = axes.problem(profile, labels)
        if rule is not None:  # the same rules decide which table combinations exist
            node.at(rule.axes[-1]).fail(f"cannot happen: {rule.reason} [{rule.kernel}]")
    if not vm.slot_zap_all and profiles != {Profile.MAINLINE}:
        node.at("slot_zap_all").fail('slot_zap_all = false needs profiles = ["mainline"]')


def _slot(node: Node, vm: Vm) -> Slot:
    check_keys(node, SLOT_KEYS, ("id", "base_gfn", "npages"))
    flags = set(get_names(node, "flags", {f: f for f in SLOT_FLAGS}, "slot flag", ()))
    slot = Slot(
        id=get_int(node, "id"),
        base_gfn=get_int(node, "base_gfn", hi=GFN_LIMIT - 1),
        npages=get_int(node, "npages", lo=1),
        as_id=get_int(node, "as_id", 0, hi=1),
        private=bool(flags & PRIVATE_SLOT_FLAGS),
        log_dirty="LOG_DIRTY_PAGES" in flags,
        readonly="READONLY" in flags,
        gmem_flags=frozenset(get_enum_list(node, "gmem_flags", GmemFlag, ())),
    )
    check_slot(node, slot, vm)
    return slot


def check_slot(node: Node, slot: Slot, vm: Vm) -> None:
    where = f"slot {slot.id} {_span(slot.base_gfn, slot.end_gfn)}"
    if slot.as_id >= vm.address_spaces:
        node.at("as_id").fail(f"as_id {slot.as_id} needs a VM without private memory; {vm.type.value} has one address space")
    if slot.end_gfn > GFN_LIMIT:
        node.at("npages").fail(f"{where} extends beyond the {GFN_BITS}-bit GFN space")
    if vm.mirror and slot.end_gfn > vm.shared_bit:
        node.at("npages").fail(f"slot covers the TDX shared-bit alias: {where} reaches shared bit {_hex(vm.shared_bit)}")
    if slot.private and slot.log_dirty:
        node.at("flags").fail("a private slot (GUEST_MEMFD/PRIVATE) cannot have LOG_DIRTY_PAGES")
    if slot.private and slot.readonly:
        node.at("flags").fail("a private slot (GUEST_MEMFD/PRIVATE) cannot be READONLY")
    if slot.readonly and vm.type in PROTECTED_STATE_VMS:
        node.at("flags").fail(f"READONLY slots are not allowed in {vm.type.value} VMs (protected state)")
    if slot.gmem_flags and not slot.private:
        node.at("gmem_flags").fail("gmem_flags need a private slot (GUEST_MEMFD/PRIVATE)")
    if GmemFlag.INIT_SHARED in slot.gmem_flags and vm.private_mem:
        node.at("gmem_flags").fail(f"INIT_SHARED is only for VMs without private memory, not {vm.type.value}")


def check_slot_profiles(node: Node, slot: Slot, vm: Vm, profiles: frozenset[Profile]) -> None:
    """The axes' slot rules (tdx-v10: only TDX accepts private slots)."""
    labels = {"vm": vm.type.value, "slot_private": axes.bool_label(slot.private)}
    for profile in sorted(profiles):
        rule = axes.problem(profile, labels)
        if rule is not None:
            node.at("flags").fail(f"cannot happen in {profile.value}: {rule.reason} [{rule.kernel}]")


def check_slot_set(nodes: Sequence[Node], slots: Sequence[Slot]) -> None:
    """Slot ids are unique and slots of one address space do not overlap."""
    for i, slot in enumerate(slots):
        for other in slots[:i]:
            if other.id == slot.id:
                nodes[i].at("id").fail(f"duplicate slot id {slot.id}")
            if other.as_id == slot.as_id and slot.base_gfn < other.end_gfn and other.base_gfn < slot.end_gfn:
                nodes[i].at("base_gfn").fail(
                    f"slot {slot.id} {_span(slot.base_gfn, slot.end_gfn)} overlaps slot {other.id} "
                    f"{_span(other.base_gfn, other.end_gfn)} in as_id {slot.as_id}")


def check_state(node: Node, state: State, profiles: frozenset[Profile]) -> None:
    """Every structural rule for a state built in code (decision-table rows,
    fuzzed cases); problems are reported at `node`."""
    check_vm(node, state.vm, profiles)
    for slot in state.slots:
        check_slot(node, slot, state.vm)
        check_slot_profiles(node, slot, state.vm, profiles)
    check_slot_set([node] * len(state.slots), state.slots)
    leaves = sorted(state.mappings)
    for leaf in leaves:
        check_mapping(node, leaf, state.vm, profiles)
        check_in_slot(node, leaf, state.vm, state.slots)
    check_leaves([node] * len(leaves), leaves)


def _private_ranges(node: Node) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for item in get_list(node, "private", []):
        pair = get_list(item)
        if len(pair) != 2:
            item.fail("expected a [start, end) pair of GFNs")
        start, end = get_int(pair[0], hi=GFN_LIMIT - 1), get_int(pair[1], hi=GFN_LIMIT)
        if start >= end:
            item.fail(f"empty range {_span(start, end)}: start must be < end")
        for other in ranges:
            if start < other[1] and other[0] < end:
                item.fail(f"private range {_span(start, end)} overlaps {_span(*other)}")
        ranges.append((start, end))
    return tuple(sorted(ranges))


# ---------------------------------------------------------------- mappings


def derive_kind(vm: Vm, root: Root) -> Optional[Kind]:
    """The kind a leaf must have given where it lives, if that settles it."""
    if root is Root.MIRROR:
        return Kind.PRIVATE
    if (vm.mirror and root is Root.DIRECT) or not vm.private_mem:
        return Kind.SHARED
    return None


def memslot_gfn(vm: Vm, mapping: Mapping) -> int:
    """The memslot GFN of a leaf: TDX direct-root leaves carry the shared bit."""
    return mapping.gfn & ~vm.shared_bit if vm.mirror and mapping.root is Root.DIRECT else mapping.gfn


def _mapping(node: Node, vm: Vm, profiles: frozenset[Profile]) -> Mapping:
    check_keys(node, MAPPING_KEYS, ("root", "gfn", "level"))
    root = get_enum(node, "root", Root)
    kind = get_enum(node, "kind", Kind, None) or derive_kind(vm, root)
    if kind is None:
        node.at("kind").fail(f"kind required: a {root.value}-root leaf in a {vm.type.value} VM can be shared or private")
    mapping = Mapping(
        as_id=get_int(node, "as_id", 0, hi=1),
        root=root,
        gfn=get_int(node, "gfn", hi=GFN_LIMIT - 1),
        level=get_choice(node, "level", LEVELS, "level"),
        kind=kind,
        invalid=get_bool(node, "invalid", False),
    )
    check_mapping(node, mapping, vm, profiles)
    return mapping


def _check_root(node: Node, m: Mapping, vm: Vm, profiles: frozenset[Profile]) -> None:
    if m.root is Root.MIRROR and not vm.mirror:
        node.at("root").fail(f"mirror roots only exist in TDX VMs, not {vm.type.value}")
    if m.root is Root.DIRECT and not vm.tdp_mmu:
        node.at("root").fail("direct roots need tdp_mmu = true")
    if m.root is Root.SHADOW and not vm.rmaps:
        node.at("root").fail("shadow roots need rmaps = true")
    if m.invalid and m.root is Root.SHADOW:
        node.at("invalid").fail("invalid applies to TDP roots (direct, mirror) only")
    if m.invalid and m.root is Root.MIRROR and Profile.TDX_V10 in profiles:
        node.at("invalid").fail("tdx-v10 never has an invalid mirror root")


def check_mapping(node: Node, m: Mapping, vm: Vm, profiles: frozenset[Profile]) -> None:
    """Structural rules for one leaf (initial or expected)."""
    if m.as_id >= vm.address_spaces:
        node.at("as_id").fail(f"as_id {m.as_id} does not exist: {vm.type.value} has one address space")
    _check_root(node, m, vm, profiles)
    if m.gfn % m.level.pages:
        node.at("gfn").fail(f"misaligned: gfn {_hex(m.gfn)} is not a multiple of {_hex(m.level.pages)} ({m.level.label})")
    if m.end > GFN_LIMIT:
        node.at("gfn").fail(f"leaf {_span(m.gfn, m.end)} extends beyond the {GFN_BITS}-bit GFN space")
    if m.root is Root.MIRROR and m.level is not Level.L4K:
        node.at("level").fail(f"mirror mappings must be 4K, got {m.level.label}")
    if vm.mirror and m.root is Root.DIRECT and not m.gfn & vm.shared_bit:
        node.at("gfn").fail(f"TDX direct-root gfn {_hex(m.gfn)} lacks the shared bit {_hex(vm.shared_bit)}")
    if vm.mirror and m.root is Root.MIRROR and m.gfn & vm.shared_bit:
        node.at("gfn").fail(f"mirror gfn {_hex(m.gfn)} has the shared bit {_hex(vm.shared_bit)} set")
    forced = Kind.PRIVATE if m.root is Root.MIRROR else (Kind.SHARED if vm.mirror and m.root is Root.DIRECT else None)
    if forced is not None and m.kind is not forced:
        node.at("kind").fail(f"a {m.root.value}-root leaf in a {vm.type.value} VM is {forced.value}, not {m.kind.value}")


def check_in_slot(node: Node, m: Mapping, vm: Vm, slots: Sequence[Slot], count: int = 1) -> None:
    """An initial leaf maps memory of exactly one slot in its address space
    (a leaf never straddles a slot boundary); so does every leaf of a run of
    `count`, which is checked leaf by leaf only when the run spans slots."""
    start = memslot_gfn(vm, m)
    end = start + count * m.level.pages
    if any(s.as_id == m.as_id and s.base_gfn <= start and end <= s.end_gfn for s in slots):
        return
    if count > 1:
        for leaf in expand(m, count):
            check_in_slot(node, leaf, vm, slots)
        return
    node.at("gfn").fail(f"mapping outside any slot: {m.describe()} covers memslot gfns {_span(start, end)}, "
                        f"not inside one slot of as_id {m.as_id}")


def check_leaves(nodes: Sequence[Node], mappings: Sequence[Mapping], counts: Optional[Sequence[int]] = None) -> None:
    """Leaves of one tree (as_id, root, invalid) do not overlap. `counts[i]`
    makes mappings[i] the first of a run of that many consecutive leaves.
    Sorted per tree, so thousands of leaves cost n log n, not n squared; an
    overlap is reported at whichever of the two comes later in the file."""
    counts = counts or [1] * len(mappings)
    ends = [m.gfn + n * m.level.pages for m, n in zip(mappings, counts)]
    trees: dict[tuple[int, Root, bool], list[int]] = {}
    for i, m in enumerate(mappings):
        trees.setdefault((m.as_id, m.root, m.invalid), []).append(i)
    for indices in trees.values():
        indices.sort(key=lambda i: (mappings[i].gfn, i))
        reach = None  # index of the run reaching furthest so far
        for i in indices:
            if reach is not None and mappings[i].gfn < ends[reach]:
                later, earlier = max(i, reach), min(i, reach)
                nodes[later].at("gfn").fail(f"leaf {_run(mappings[later], counts[later])} overlaps "
                                            f"{_run(mappings[earlier], counts[earlier])}")
            if reach is None or ends[i] > ends[reach]:
                reach = i


def _run(m: Mapping, count: int) -> str:
    return m.describe() + (f" (first of {_hex(count)})" if count > 1 else "")


def _mapping_run(node: Node, vm: Vm, profiles: frozenset[Profile]) -> tuple[Mapping, int]:
    """One mapping table: a leaf, or with `count = N` the first of N
    consecutive leaves of its level (a split huge page in one line). The
    structural rules hold for every leaf of the run: checked on its ends,
    which suffices when the run does not cross the TDX shared bit."""
    first = _mapping(node, vm, profiles)
    count = get_int(node, "count", 1, lo=1)
    if count == 1:
        return first, 1
    step = first.level.pages
    if first.gfn + count * step > GFN_LIMIT:
        node.at("count").fail(f"{_hex(count)} {first.level.label} leaves from {_hex(first.gfn)} extend beyond the "
                              f"{GFN_BITS}-bit GFN space")
    last = Mapping(first.as_id, first.root, first.gfn + (count - 1) * step, first.level, first.kind, first.invalid)
    try:
        check_mapping(node, last, vm, profiles)
    except LoadError as err:
        node.at("count").fail(f"the run's last leaf ({last.describe()}): {err.message}")
    if vm.shared_bit and (first.gfn ^ last.gfn) >= vm.shared_bit:
        node.at("count").fail(f"the run from {_hex(first.gfn)} to {_hex(last.gfn)} crosses the TDX shared bit "
                              f"{_hex(vm.shared_bit)}")
    return first, count


def expand(first: Mapping, count: int) -> list[Mapping]:
    """The leaves of a run."""
    if count == 1:
        return [first]
    step = first.level.pages
    return [Mapping(first.as_id, first.root, gfn, first.level, first.kind, first.invalid)
            for gfn in range(first.gfn, first.gfn + count * step, step)]


def _mappings(node: Node, key: str, vm: Vm, profiles: frozenset[Profile],
              slots: Optional[Sequence[Slot]] = None) -> Optional[frozenset[Mapping]]:
    """A list of leaves; with `slots` (initial state) each must lie inside a slot."""
    nodes = get_list(node, key, None)
    if nodes is None:
        return None
    runs = [_mapping_run(n, vm, profiles) for n in nodes]
    if slots is not None:
        for item, (first, count) in zip(nodes, runs):
            check_in_slot(item, first, vm, slots, count)
    check_leaves(nodes, [first for first, _ in runs], [count for _, count in runs])
    return frozenset(leaf for first, count in runs for leaf in expand(first, count))


def _host_huge(node: Node, slots: Sequence[Slot]) -> tuple[tuple[int, int, Level], ...]:
    """`host_huge`: as_id-0 memslot GFN ranges backed by huge host pages,
    `[start, end]` for 2 MiB pages (THP) or `[start, end, "1G"]` for 1 GiB
    ones; aligned to the page size, each page inside one slot, no overlaps."""
    ranges: list[tuple[int, int, Level]] = []
    for item in get_list(node, "host_huge", []):
        cells = get_list(item)
        if len(cells) not in (2, 3):
            item.fail('expected [start, end] (2M host pages) or [start, end, "1G"]')
        start, end = get_int(cells[0], hi=GFN_LIMIT - 1), get_int(cells[1], hi=GFN_LIMIT)
        level = get_choice(cells[2], None, {"2M": Level.L2M, "1G": Level.L1G}, "host page size") \
            if len(cells) == 3 else Level.L2M
        if start >= end:
            item.fail(f"empty range {_span(start, end)}: start must be < end")
        if start % level.pages or end % level.pages:
            item.fail(f"range {_span(start, end)} is not aligned to its {level.label} host pages "
                      f"({_hex(level.pages)} GFNs)")
        for page in range(start, end, level.pages):
            if not any(s.as_id == 0 and s.base_gfn <= page and page + level.pages <= s.end_gfn for s in slots):
                item.fail(f"host page {_span(page, page + level.pages)} is not inside one slot of as_id 0: "
                          f"a host page backs slot memory")
        for other in ranges:
            if start < other[1] and other[0] < end:
                item.fail(f"host_huge range {_span(start, end)} overlaps {_span(other[0], other[1])}")
        ranges.append((start, end, level))
    return tuple(sorted(ranges))


def _initial(node: Node, vm: Vm, profiles: frozenset[Profile], slots: Sequence[Slot]
             ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int, Level], ...], frozenset[Mapping]]:
    if node.missing:
        return (), (), frozenset()
    check_keys(node, INITIAL_KEYS)
    private, host_huge = _private_ranges(node), _host_huge(node, slots)
    return private, host_huge, _mappings(node, "mappings", vm, profiles, slots) or frozenset()


# ---------------------------------------------------------------- operations


@dataclass(frozen=True)
class Param:
    """One operation parameter: TOML key (= dataclass field), parser, default, profiles."""

    name: str
    parse: Callable[[Node], Any]
    default: Any = REQUIRED
    profiles: frozenset[Profile] = frozenset(Profile)


_V10 = frozenset({Profile.TDX_V10})
_MAINLINE = frozenset({Profile.MAINLINE})
_SLOT = Param("slot", get_int)
_START = Param("start", lambda n: get_int(n, hi=GFN_LIMIT))
_END = Param("end", lambda n: get_int(n, hi=GFN_LIMIT))

OP_PARAMS: dict[str, tuple[Param, ...]] = {
    "unmap_gfn_range": (
        _SLOT, _START, _END,
        Param("flush_in", get_bool, False),
        Param("range_flags", lambda n: frozenset(get_enum_list(n, None, RangeFlag)), frozenset(), _V10),
        Param("attr", v10_attr, None, _V10),
        Param("attr_filter", lambda n: frozenset(get_enum_list(n, None, AttrFilter)), REQUIRED, _MAINLINE),
    ),
    "zap_gfn_range": (_START, _END),
    "zap_memslot": (_SLOT,),
    "zap_all_fast": (),
    "zap_all": (),
    "mmu_notifier_invalidate": (Param("as_id", lambda n: get_int(n, hi=1), 0), _START, _END),
    "gmem_punch_hole": (_SLOT, _START, _END),
    "set_memory_attributes": (
        Param("address", lambda n: get_int(n, hi=U64_MAX)),
        Param("size", lambda n: get_int(n, hi=U64_MAX)),
        Param("attributes", memory_attributes),
        Param("flags", lambda n: get_int(n, hi=U64_MAX), 0),
    ),
    "memslot_delete": (_SLOT,),
    "memslot_move": (_SLOT, Param("new_base_gfn", lambda n: get_int(n, hi=GFN_LIMIT - 1))),
    "memslot_set_flags": (_SLOT, Param("flags", memslot_flags)),
    "disable_quirk": (Param("quirk", lambda n: get_enum(n, None, Quirk)),),
    "memory_type_change": (_START, _END),
    "mm_release": (),
    "vm_destroy": (),
}


def _profile_names(profiles: Iterable[Profile]) -> str:
    return ", ".join(sorted(p.value for p in profiles))


def _op(node: Node, profiles: frozenset[Profile]) -> Operation:
    name = get_choice(node, "op", {k: k for k in OPERATIONS}, "op")
    params = OP_PARAMS[name]
    check_keys(node, ("op", "expect") + tuple(p.name for p in params))
    values = {}
    for param in params:
        child = node.at(param.name)
        if not profiles <= param.profiles:
            only = _profile_names(param.profiles)
            if not child.missing:
                child.fail(f"{param.name} is {only}-only; this vector lists {_profile_names(profiles)}")
            if param.default is REQUIRED and profiles & param.profiles:
                node.at("op").fail(f"{name} needs {param.name} under {only} but other listed profiles "
                                   f"do not accept it; split the vector per profile")
            continue
        if child.missing and param.default is REQUIRED:
            child.fail("missing required key")
        values[param.name] = param.default if child.missing else param.parse(child)
    return OPERATIONS[name](**values)


def _slot_range(node: Node, start: int, end: int, slot: Slot) -> None:
    problem = "start" if not slot.base_gfn <= start < end else ("end" if end > slot.end_gfn else None)
    if problem:
        node.at(problem).fail(f"range {_span(start, end)} must satisfy base_gfn <= start < end <= end_gfn "
                              f"of slot {slot.id} {_span(slot.base_gfn, slot.end_gfn)}")


def _nonempty(node: Node, start: int, end: int) -> None:
    if start >= end:
        node.at("end").fail(f"empty range {_span(start, end)}: start must be < end")


def _below_alias(node: Node, end: int, vm: Vm, profiles: frozenset[Profile]) -> None:
    """mainline walks a TDX direct root from `start | bit` and stops by the
    unaliased end, so a range past the shared bit is not the OR of its ends;
    the spec leaves such ranges undefined (docs/spec.md section 7)."""
    if vm.mirror and Profile.MAINLINE in profiles and end > vm.shared_bit:
        node.at("end").fail(f"range end {_hex(end)} passes the TDX shared bit {_hex(vm.shared_bit)}: "
                            f"the mainline walk there is not specified")


def _v10_attributes(node: Node, op: SetMemoryAttributes) -> None:
    """tdx-v10 has only ENCRYPT_REG_REGION / UNREG_REGION: private or not, no flags."""
    if op.attributes not in (0, MEMORY_ATTRIBUTE_PRIVATE):
        node.at("attributes").fail('tdx-v10 can only express attributes [] or ["PRIVATE"]')
    if op.flags:
        node.at("flags").fail("tdx-v10 can only express flags = 0")


def check_step(node: Node, op: Operation, expect: Observables, vm: Vm, profiles: frozenset[Profile],
               slots: dict[int, Slot]) -> dict[int, Slot]:
    """Rules relating a step to the state before it; returns the slots after it."""
    if type(op) in MAINLINE_ONLY_OPS and profiles != {Profile.MAINLINE}:
        node.at("op").fail(f"{op_name(op)} is mainline-only; this vector lists {_profile_names(profiles)}")
    slot = None
    if hasattr(op, "slot"):
        slot = slots.get(op.slot)
        if slot is None:
            live = ", ".join(str(s) for s in sorted(slots)) or "none"
            node.at("slot").fail(f"slot {op.slot} does not exist at this step (slots: {live})")
    if isinstance(op, UnmapGfnRange):
        _slot_range(node, op.start, op.end, slot)
        if RangeFlag.SET_MEM_ATTR in op.range_flags and op.attr is None:
            node.at("attr").fail("attr is required with range_flags SET_MEM_ATTR")
    elif isinstance(op, GmemPunchHole):
        if not slot.private:
            node.at("slot").fail(f"gmem_punch_hole needs a private slot; slot {slot.id} is not")
        _slot_range(node, op.start, op.end, slot)
    if isinstance(op, (ZapGfnRange, MmuNotifierInvalidate, MemoryTypeChange)):
        _below_alias(node, op.end, vm, profiles)
    if isinstance(op, MmuNotifierInvalidate):
        if op.as_id >= vm.address_spaces:
            node.at("as_id").fail(f"as_id {op.as_id} does not exist: {vm.type.value} has one address space")
        _nonempty(node, op.start, op.end)
    elif isinstance(op, MemoryTypeChange):
        _nonempty(node, op.start, op.end)
    elif isinstance(op, SetMemoryAttributes) and Profile.TDX_V10 in profiles:
        _v10_attributes(node, op)
    elif isinstance(op, MemslotDelete):
        return {k: v for k, v in slots.items() if k != op.slot}
    elif isinstance(op, MemslotMove) and not expect.errno:
        return {**slots, op.slot: replace(slot, base_gfn=op.new_base_gfn)}  # later steps see the new range
    elif isinstance(op, MemslotSetFlags) and not expect.errno and flags_only(slot, op.flags):
        return {**slots, op.slot: replace(slot, log_dirty=bool(op.flags & MEM_LOG_DIRTY_PAGES))}
    return slots


def flags_only(slot: Slot, flags: int) -> bool:
    """A request that can only toggle dirty logging: every other bit as the slot has it."""
    return flags & ~MEM_LOG_DIRTY_PAGES == slot.flag_bits & ~MEM_LOG_DIRTY_PAGES


def _expect(node: Node, op: Operation, vm: Vm, profiles: frozenset[Profile]) -> Observables:
    if node.missing:
        return Observables()
    check_keys(node, EXPECT_KEYS)
    layer = op_layer(op)
    for key, wanted in EXPECT_LAYER.items():
        if not node.at(key).missing and layer is not wanted:
            node.at(key).fail(f"{key} is only observable for {wanted.value}-layer ops; "
                              f"{op_name(op)} is on the {layer.value} layer")
    warns = get_enum_list(node, "warns", WarnSite, None)
    errno = node.at("errno")
    return Observables(
        mappings=_mappings(node, "mappings", vm, profiles),
        flush=get_bool(node, "flush", None),
        decision=get_decision(node, "decision", None),
        warns=None if warns is None else frozenset(warns),
        errno=None if errno.missing else get_errno(errno),
    )


def _steps(node: Node, vm: Vm, profiles: frozenset[Profile], slots: Sequence[Slot]) -> tuple[Step, ...]:
    nodes = get_list(node, "step")
    if not nodes:
        node.at("step").fail("a vector needs at least one [[vector.step]]")
    live = {slot.id: slot for slot in slots}
    steps = []
    for step_node in nodes:
        op = _op(step_node, profiles)
        expect = _expect(step_node.at("expect"), op, vm, profiles)
        live = check_step(step_node, op, expect, vm, profiles, live)
        steps.append(Step(op, expect, step_node.line))
    return tuple(steps)


# ---------------------------------------------------------------- vectors and files


def make_vector(file: FileCtx, local_id: str, description: str, profiles: frozenset[Profile],
                flags: tuple[Flag, ...], requires: frozenset[str], state: State, steps: tuple[Step, ...],
                line: int) -> Vector:
    derived = capabilities.derive(state.vm, state.slots, state.mappings, (s.op for s in steps), state.private_ranges,
                                  state.host_huge)
    return Vector(
        id=f"{file.stem}::{local_id}", description=description, profiles=profiles, requires=requires | derived,
        flags=flags, state=state, steps=steps, path=file.path, line=line,
    )


def _vector(node: Node, file: FileCtx) -> Vector:
    check_keys(node, VECTOR_KEYS, VECTOR_REQUIRED)
    local_id, description = get_id(node), get_text(node, "description")
    profiles = get_profiles(node)
    flags, requires = get_flag_refs(node, "flags", file.flags), get_requires(node, profiles)
    vm = _vm(node.at("vm"), profiles)
    slot_nodes = get_list(node, "slot", [])
    slots = tuple(_slot(n, vm) for n in slot_nodes)
    check_slot_set(slot_nodes, slots)
    for slot_node, slot in zip(slot_nodes, slots):
        check_slot_profiles(slot_node, slot, vm, profiles)
    private, host_huge, mappings = _initial(node.at("initial"), vm, profiles, slots)
    steps = _steps(node, vm, profiles, slots)
    state = State(vm, slots, private, mappings, host_huge)
    vector = make_vector(file, local_id, description, profiles, flags, requires, state, steps, node.line)
    return replace(vector, pins=get_pins(node)) if "pins" in node.value else vector


def get_pins(node: Node) -> str:
    """`pins = "<file stem>::<id>"`: the vector this one is a live variant of
    (checked against the whole suite by `conformance coverage --live`)."""
    target = get_str(node, "pins")
    stem, sep, rest = target.partition("::")
    if not sep or not ID_PATTERN.match(stem) or not all(ID_PATTERN.match(p) for p in rest.split("::")):
        node.at("pins").fail(f"bad vector id {target!r}: <file stem>::<id>")
    return target


def _read(path: str | os.PathLike) -> tuple[Source, dict]:
    shown = str(os.fspath(path))
    try:
        text = Path(shown).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(shown, 0, "<file>", str(exc)) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = toml_error_position(str(exc), text)
        raise LoadError(shown, line, "<toml>", message) from None
    return Source(shown, LineIndex(text)), doc


def _claim_id(node: Node, seen: dict[str, Node]) -> None:
    """Vector and table ids share one namespace per file."""
    expect_table(node)
    ident = get_id(node)
    if ident in seen:
        node.at("id").fail(f"duplicate id {ident!r} (first used at line {seen[ident].line})")
    seen[ident] = node


def suite_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The vector files under each path (a directory is searched), registries excluded."""
    files: list[Path] = []
    for path in map(Path, paths):
        found = sorted(path.rglob("*.toml")) if path.is_dir() else [path]
        files += [f for f in found if f.name != REGISTRY_NAME]
    return files


def load_file(path: str | os.PathLike) -> SuiteFile:
    """Load and validate one suite file; raise LoadError at the first problem."""
    from .tables import expand_table  # tables.py builds on this module

    src, doc = _read(path)
    root = Node(src, (), doc)
    if Path(src.path).name == REGISTRY_NAME:
        root.fail(f"{REGISTRY_NAME} is a flag registry, not a vector file")
    check_keys(root, TOP_KEYS, ("suite",))
    suite = root.at("suite")
    check_keys(suite, SUITE_KEYS, ("format", "description"))
    if get_int(suite, "format") != FORMAT:
        suite.at("format").fail(f"unsupported format {suite.value['format']}; this loader reads format {FORMAT}")
    description = get_text(suite, "description")
    file = FileCtx(src.path, Path(src.path).stem, _flags_for(src, doc))
    seen: dict[str, Node] = {}
    vectors: list[Vector] = []
    for node in get_list(root, "vector", []):
        _claim_id(node, seen)
        vectors.append(_vector(node, file))
    for node in get_list(root, "table", []):
        _claim_id(node, seen)
        vectors.extend(expand_table(node, file))
    vectors.sort(key=lambda v: v.line)  # file order, vectors and table rows interleaved
    return SuiteFile(src.path, description, tuple(vectors))
