"""The vector format, declared once: every key, its type, its bounds.

Three things read these declarations: `check` (a TOML value against a
type, raising RuleViolation with the key path), `convert` (the checked
value as the model's Python value) and `jsonschema.py` (the published
JSON Schema). Nothing here knows about files or line numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .errors import KeyPath, RuleViolation
from .model import (
    ERRNO_NAMES,
    GFN_BITS,
    MEMORY_ATTRIBUTE_PRIVATE,
    MEMSLOT_FLAG_BITS,
    OPERATIONS,
    V10_ATTR_NAMES,
    AttrFilter,
    Decision,
    GmemFlag,
    Kind,
    Level,
    Profile,
    Quirk,
    RangeFlag,
    Root,
    VmType,
    WarnSite,
)

FORMAT = 1  # the format's version: [suite] format; the JSON Schema's major version
GFN_LIMIT = 1 << GFN_BITS  # GFNs are below this (52-bit guest physical addresses)
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
SLOT_ID_MAX = 0x7FFF  # KVM_MEM_SLOTS_NUM - 1: the largest slot id __kvm_set_memory_region accepts
ERRNO_MAX = 4095  # MAX_ERRNO: an errno is a small positive number
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
BUG_CLASSES = (
    "basic",
    "edge-case",
    "over-zap",
    "under-zap",
    "lost-flush",
    "spurious-flush",
    "uninitialised",
    "wrong-root",
    "alias",
    "huge-page",
    "errno",
    "warn",
)
SLOT_FLAGS = ("LOG_DIRTY_PAGES", "READONLY", "GUEST_MEMFD", "PRIVATE")  # PRIVATE: tdx-v10's KVM_MEM_PRIVATE
LEVELS = {"4K": Level.L4K, "2M": Level.L2M, "1G": Level.L1G}
# A spec never intends an indeterminate choice; only a backend may report one.
EXPECTABLE_DECISIONS = {d.value: d for d in Decision if d is not Decision.INDETERMINATE}


def fail(path: KeyPath, message: str, other: KeyPath | None = None) -> NoReturn:
    raise RuleViolation(path, message, other)


def hexed(value: int) -> str:
    return f"{value:#x}" if abs(value) > 9 else str(value)


def type_name(value: Any) -> str:
    """How a wrong value is named in a message."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {hexed(value)}"
    if isinstance(value, str):
        return f"string {value!r}" if len(value) < 80 else "a string"
    return {list: "an array", dict: "a table", float: f"float {value}"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- types


@dataclass(frozen=True)
class Int:
    lo: int = 0
    hi: int = U64_MAX
    values: tuple[int, ...] = ()  # when not empty: the only values allowed


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Str:
    pattern: str = ""  # a regular expression the string must match
    what: str = "string"  # how a mismatch names it ("id", "flag name")
    one_line: bool = False  # a non-empty single line (descriptions)


@dataclass(frozen=True)
class Choice:
    """One name out of `names`; converts to `names[name]`."""

    what: str
    names: dict[str, Any]


@dataclass(frozen=True)
class Array:
    item: Type
    min_items: int = 0
    too_few: str = ""  # the message when there are fewer than min_items
    distinct: bool = False  # no value twice (names: "duplicate <what>")


@dataclass(frozen=True)
class Cells:
    """A fixed-length array: positions have their own types; the last
    `optional` positions may be left out."""

    items: tuple[Type, ...]
    optional: int = 0
    shape: str = ""  # the message when the length is wrong


@dataclass(frozen=True)
class Bits:
    """A bit mask: a list of names from `names`, or a raw integer up to `hi`."""

    what: str
    names: dict[str, int]
    hi: int


@dataclass(frozen=True)
class Either:
    """A name or an integer (errno, tdx-v10 attr): picked by the value's type."""

    name: Choice
    number: Int


@dataclass(frozen=True)
class Field:
    key: str
    type: Type
    required: bool = False
    doc: str = ""
    profiles: frozenset[Profile] = frozenset(Profile)  # where the key may appear (operation parameters)
    default: Any = None  # the model value when the key is absent


@dataclass(frozen=True)
class Table:
    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    def field(self, key: str) -> Field:
        return next(f for f in self.fields if f.key == key)

    @functools.cached_property
    def fits(self) -> Callable[[Any], bool] | None:
        """For a table of scalars (a mapping): a quick yes/no test, so that a
        million good rows are checked in one pass and only a bad one pays
        for `check` and its message. None for other tables."""
        tests = {f.key: _quick(f.type) for f in self.fields}
        if any(test is None for test in tests.values()):
            return None
        required = frozenset(f.key for f in self.fields if f.required)

        def fits(value: Any) -> bool:
            if type(value) is not dict or not required <= value.keys():
                return False
            return all(key in tests and tests[key](item) for key, item in value.items())  # type: ignore[misc]

        return fits


@dataclass(frozen=True)
class MapOf:
    """A table of named entries (`[flags.<name>]`)."""

    key: Str
    value: Table


@dataclass(frozen=True)
class Tagged:
    """A table whose keys depend on one string key (a step's `op`)."""

    tag: str
    cases: dict[str, Table]
    common: tuple[Field, ...] = ()  # keys every case accepts besides its own


@dataclass(frozen=True)
class Anything:
    """A value the schema does not constrain (a decision-table cell: its column decides)."""

    doc: str = ""


Type = Int | Bool | Str | Choice | Array | Cells | Bits | Either | Table | MapOf | Tagged | Anything


def enum_choice(cls: Any, what: str = "") -> Choice:
    return Choice(what or cls.__name__, {member.value: member for member in cls})


# ---------------------------------------------------------------- checking


def check(value: Any, kind: Type, path: KeyPath) -> None:
    """Raise RuleViolation at the first place `value` does not fit `kind`."""
    _CHECKS[type(kind)](value, kind, path)


def expect_type(value: Any, python: type, what: str, path: KeyPath) -> None:
    if not isinstance(value, python) or (python is int and isinstance(value, bool)):  # TOML true is not 1
        fail(path, f"expected {what}, got {type_name(value)}")


def _int(value: Any, kind: Int, path: KeyPath) -> None:
    expect_type(value, int, "an integer", path)
    if kind.values and value not in kind.values:
        fail(path, f"must be {' or '.join(map(str, kind.values))}, got {value}")
    if value < kind.lo:
        fail(path, f"{hexed(value)} is below the minimum {hexed(kind.lo)}")
    if value > kind.hi:
        fail(path, f"{hexed(value)} is above the maximum {hexed(kind.hi)}")


def _bool(value: Any, kind: Bool, path: KeyPath) -> None:
    if not isinstance(value, bool):
        fail(path, f"expected a boolean (true/false), got {type_name(value)}")


def _str(value: Any, kind: Str, path: KeyPath) -> None:
    expect_type(value, str, "a string", path)
    if kind.one_line and (not value.strip() or "\n" in value):
        fail(path, "must be a non-empty single line")
    if kind.pattern and not _matches(kind.pattern, value):
        fail(path, f"bad {kind.what} {value!r}: must match {kind.pattern}")


def _matches(pattern: str, value: str) -> bool:
    import re  # compiled patterns are cached by re itself

    return re.fullmatch(pattern.strip("^$"), value) is not None


def _choice(value: Any, kind: Choice, path: KeyPath) -> None:
    expect_type(value, str, "a string", path)
    if value not in kind.names:
        fail(path, f"unknown {kind.what} {value!r}; allowed: {', '.join(kind.names)}")


def _quick(kind: Type) -> Callable[[Any], bool] | None:
    """A yes/no test equivalent to `check` for a scalar type, else None."""
    if isinstance(kind, Int):
        lo, hi, values = kind.lo, kind.hi, kind.values
        return lambda x: type(x) is int and lo <= x <= hi and (not values or x in values)
    if isinstance(kind, Bool):
        return lambda x: type(x) is bool
    if isinstance(kind, Choice):
        names = kind.names
        return lambda x: type(x) is str and x in names
    return None


def _array(value: Any, kind: Array, path: KeyPath) -> None:
    expect_type(value, list, "an array", path)
    if len(value) < kind.min_items:
        fail(path, kind.too_few or f"needs at least {kind.min_items} item(s)")
    fits = kind.item.fits if isinstance(kind.item, Table) else None
    for i, item in enumerate(value):
        if fits is None or not fits(item):
            check(item, kind.item, path + (i,))
    if kind.distinct:
        seen: set[Any] = set()
        for i, item in enumerate(value):
            if item in seen:
                what = getattr(kind.item, "what", "value")
                fail(path + (i,), f"duplicate {what} {item!r}")
            seen.add(item)


def _cells(value: Any, kind: Cells, path: KeyPath) -> None:
    expect_type(value, list, "an array", path)
    if not len(kind.items) - kind.optional <= len(value) <= len(kind.items):
        fail(path, kind.shape or f"expected {len(kind.items)} items")
    for i, item in enumerate(value):
        check(item, kind.items[i], path + (i,))


def _bits(value: Any, kind: Bits, path: KeyPath) -> None:
    if isinstance(value, list):
        _array(value, Array(Choice(kind.what, dict(kind.names)), distinct=True), path)
    else:
        _int(value, Int(0, kind.hi), path)


def _either(value: Any, kind: Either, path: KeyPath) -> None:
    if isinstance(value, str):
        _choice(value, kind.name, path)
    else:
        _int(value, kind.number, path)


def _table(value: Any, kind: Table, path: KeyPath) -> None:
    check_keys(value, kind.fields, path)
    for spec in kind.fields:
        if spec.key in value:
            check(value[spec.key], spec.type, path + (spec.key,))


def check_keys(value: Any, fields: tuple[Field, ...], path: KeyPath) -> None:
    """A table with only the declared keys and every required one."""
    expect_type(value, dict, "a table", path)
    allowed = [f.key for f in fields]
    for key in value:
        if key not in allowed:
            fail(path + (key,), f"unknown key {key!r}; allowed keys: {', '.join(allowed)}")
    for spec in fields:
        if spec.required and spec.key not in value:
            fail(path + (spec.key,), "missing required key")


def _map_of(value: Any, kind: MapOf, path: KeyPath) -> None:
    expect_type(value, dict, "a table", path)
    for name, entry in value.items():
        if not _matches(kind.key.pattern, name):
            fail(path + (name,), f"bad {kind.key.what} {name!r}: must match {kind.key.pattern}")
        check(entry, kind.value, path + (name,))


def _tagged(value: Any, kind: Tagged, path: KeyPath) -> None:
    expect_type(value, dict, "a table", path)
    if kind.tag not in value:
        fail(path + (kind.tag,), "missing required key")
    check(value[kind.tag], Choice(kind.tag, {name: name for name in kind.cases}), path + (kind.tag,))
    case = kind.cases[value[kind.tag]]
    _table(value, Table(case.name, (Field(kind.tag, Str(), True),) + case.fields + kind.common), path)


def _anything(value: Any, kind: Anything, path: KeyPath) -> None:
    pass


_CHECKS: dict[type, Callable[[Any, Any, KeyPath], None]] = {
    Int: _int,
    Bool: _bool,
    Str: _str,
    Choice: _choice,
    Array: _array,
    Cells: _cells,
    Bits: _bits,
    Either: _either,
    Table: _table,
    MapOf: _map_of,
    Tagged: _tagged,
    Anything: _anything,
}


def convert(value: Any, kind: Type) -> Any:
    """A checked value as the model's value: names become their members,
    bit lists their mask, arrays tuples."""
    if isinstance(kind, Choice):
        return kind.names[value]
    if isinstance(kind, Bits):
        if isinstance(value, list):
            mask = 0
            for name in value:
                mask |= kind.names[name]
            return mask
        return value
    if isinstance(kind, Either):
        return kind.name.names[value] if isinstance(value, str) else value
    if isinstance(kind, Array):
        return tuple(convert(item, kind.item) for item in value)
    if isinstance(kind, Cells):
        return tuple(convert(item, sub) for item, sub in zip(value, kind.items))
    return value


def parse(value: Any, kind: Type, path: KeyPath) -> Any:
    check(value, kind, path)
    return convert(value, kind)


def get(table: dict[str, Any], spec: Field, path: KeyPath) -> Any:
    """A checked table's value for one field, converted, or its default."""
    if spec.key not in table:
        return spec.default
    return convert(table[spec.key], spec.type)


# ---------------------------------------------------------------- the format

GFN = Int(0, GFN_LIMIT - 1)
GFN_END = Int(0, GFN_LIMIT)  # an exclusive end
ID = Str(ID_PATTERN, "id")
TEXT = Str(one_line=True)
STRINGS = Array(Str())
PROFILES = Array(enum_choice(Profile), 1, "must list at least one profile; allowed: tdx-v10, mainline", True)
FLAG_NAMES = Array(Str(ID_PATTERN, "flag name"), 1, "must name at least one flag")
ERRNO = Either(Choice("errno", dict(ERRNO_NAMES)), Int(0, ERRNO_MAX))
V10_ATTR = Either(Choice("attr", dict(V10_ATTR_NAMES)), Int(0, U64_MAX))
MEMORY_ATTRIBUTES = Bits("memory attribute", {"PRIVATE": MEMORY_ATTRIBUTE_PRIVATE}, U64_MAX)
MEMSLOT_FLAGS = Bits("memslot flag", dict(MEMSLOT_FLAG_BITS), U32_MAX)  # KVM_MEM_* flags are a u32

FLAG = Table(
    "flag",
    (
        Field("description", TEXT, True, "one line: why the flag exists"),
        Field(
            "bug_class", Choice("bug_class", {c: c for c in BUG_CLASSES}), True, "the class of bug it guards against"
        ),
        Field("kernel", STRINGS, True, "kernel functions it exercises"),
        Field("links", STRINGS, False, "where to read more (lore, commits)", default=()),
    ),
    "a flag: why vectors exist",
)
FLAGS = MapOf(Str(ID_PATTERN, "flag name"), FLAG)
REGISTRY = Table("registry", (Field("flags", FLAGS, False, "the flags every suite file under this directory may use"),))

SUITE = Table(
    "suite",
    (
        Field("format", Int(values=(FORMAT,)), True, f"the format version: {FORMAT}"),
        Field("description", TEXT, True, "one line: what the file covers"),
        Field("flags", FLAGS, False, "flags only this file uses"),
    ),
)

VM = Table(
    "vm",
    (
        Field("type", enum_choice(VmType), True, "the VM type (KVM_CREATE_VM)"),
        Field("tdp_mmu", Bool(), True, "the TDP MMU is on"),
        Field("rmaps", Bool(), False, "rmaps exist (default: not tdp_mmu)"),
        Field("gpaw", Int(values=(48, 52)), False, "TDX only: the guest physical address width", default=52),
        Field("slot_zap_all", Bool(), False, "KVM_X86_QUIRK_SLOT_ZAP_ALL enabled (mainline only)", default=True),
    ),
)

SLOT = Table(
    "slot",
    (
        Field("id", Int(0, SLOT_ID_MAX), True, "the slot id, unique in the vector"),
        Field("as_id", Int(0, 1), False, "address space: 1 is SMM", default=0),
        Field("base_gfn", GFN, True, "first GFN"),
        Field("npages", Int(1, GFN_LIMIT), True, "number of 4 KiB pages"),
        Field(
            "flags",
            Array(Choice("slot flag", {f: f for f in SLOT_FLAGS}), distinct=True),
            False,
            "KVM_MEM_* flags; PRIVATE (tdx-v10) and GUEST_MEMFD (mainline) both mean private-capable",
            default=(),
        ),
        Field(
            "gmem_flags", Array(enum_choice(GmemFlag), distinct=True), False, "guest_memfd creation flags", default=()
        ),
    ),
)

MAPPING = Table(
    "mapping",
    (
        Field("root", enum_choice(Root), True, "the tree the leaf lives in"),
        Field("gfn", GFN, True, "the leaf's index in its tree (a TDX direct-root GFN carries the shared bit)"),
        Field("level", Choice("level", LEVELS), True, "4K, 2M or 1G"),
        Field("kind", enum_choice(Kind), False, "shared or private; required where the root does not decide"),
        Field("as_id", Int(0, 1), False, "address space", default=0),
        Field("invalid", Bool(), False, "the root is already marked invalid", default=False),
        Field("count", Int(1, GFN_LIMIT), False, "this leaf and the next count-1 of its level", default=1),
    ),
)
MAPPINGS = Array(MAPPING)
RANGE = Cells((GFN, GFN_END), shape="expected a [start, end) pair of GFNs")
HOST_PAGE = Choice("host page size", {"2M": Level.L2M, "1G": Level.L1G})
HOST_HUGE = Cells((GFN, GFN_END, HOST_PAGE), 1, 'expected [start, end] (2M host pages) or [start, end, "1G"]')

INITIAL = Table(
    "initial",
    (
        Field("private", Array(RANGE), False, "GFN ranges whose memory attribute is private", default=()),
        Field("host_huge", Array(HOST_HUGE), False, "as_id-0 GFN ranges backed by huge host pages", default=()),
        Field("mappings", MAPPINGS, False, "the leaves present before the first step", default=()),
    ),
)

EXPECT = Table(
    "expect",
    (
        Field("mappings", MAPPINGS, False, "every leaf present after the step"),
        Field("flush", Bool(), False, "a TLB flush follows"),
        Field("decision", Choice("decision", EXPECTABLE_DECISIONS), False, "call layer: which kinds the rule selects"),
        Field("warns", Array(enum_choice(WarnSite), distinct=True), False, "call layer: WARN sites that fire"),
        Field("errno", ERRNO, False, "event layer: the result (OK or an errno)"),
    ),
)

_V10 = frozenset({Profile.TDX_V10})
_MAINLINE = frozenset({Profile.MAINLINE})
_SLOT = Field("slot", Int(0, SLOT_ID_MAX), True, "the slot id")
_START = Field("start", GFN_END, True, "first GFN of the range")
_END = Field("end", GFN_END, True, "the range's exclusive end")

# op name -> its parameters (each the TOML key and the operation dataclass field)
OP_PARAMS: dict[str, tuple[Field, ...]] = {
    "unmap_gfn_range": (
        _SLOT,
        _START,
        _END,
        Field("flush_in", Bool(), False, "the flush the caller already owes", default=False),
        Field(
            "range_flags",
            Array(enum_choice(RangeFlag), distinct=True),
            False,
            "struct kvm_gfn_range flags",
            _V10,
            frozenset(),
        ),
        Field("attr", V10_ATTR, False, "the range attribute (with SET_MEM_ATTR)", _V10),
        Field(
            "attr_filter",
            Array(enum_choice(AttrFilter), distinct=True),
            True,
            "enum kvm_gfn_range_filter bits",
            _MAINLINE,
            frozenset(),
        ),
    ),
    "zap_gfn_range": (_START, _END),
    "zap_memslot": (_SLOT,),
    "zap_all_fast": (),
    "zap_all": (),
    "mmu_notifier_invalidate": (Field("as_id", Int(0, 1), False, "address space", default=0), _START, _END),
    "gmem_punch_hole": (_SLOT, _START, _END),
    "set_memory_attributes": (
        Field("address", Int(0, U64_MAX), True, "guest physical address"),
        Field("size", Int(0, U64_MAX), True, "bytes"),
        Field("attributes", MEMORY_ATTRIBUTES, True, "KVM_MEMORY_ATTRIBUTE_* bits"),
        Field("flags", Int(0, U64_MAX), False, "must be 0", default=0),
    ),
    "memslot_delete": (_SLOT,),
    "memslot_move": (_SLOT, Field("new_base_gfn", GFN, True, "the slot's new first GFN")),
    "memslot_set_flags": (_SLOT, Field("flags", MEMSLOT_FLAGS, True, "the slot's new KVM_MEM_* flags")),
    "disable_quirk": (Field("quirk", enum_choice(Quirk), True, "the quirk to disable"),),
    "memory_type_change": (_START, _END),
    "mm_release": (),
    "vm_destroy": (),
}
assert set(OP_PARAMS) == set(OPERATIONS)

STEP = Tagged(
    "op",
    {
        name: Table(
            name,
            tuple(
                # profile-only keys are optional here; the rules say which profiles need them
                Field(p.key, p.type, p.required and p.profiles == frozenset(Profile), p.doc)
                for p in params
            ),
        )
        for name, params in OP_PARAMS.items()
    },
    (Field("expect", EXPECT, False, "what the step must leave behind"),),
)

VECTOR = Table(
    "vector",
    (
        Field("id", ID, True, "unique in the file; the vector id is <suite-relative path>::<id>"),
        Field("description", TEXT, True, "one line"),
        Field("profiles", PROFILES, True, "the spec profiles the vector holds in"),
        Field("flags", FLAG_NAMES, True, "why the vector exists: names from flags.toml or [suite.flags]"),
        Field("requires", STRINGS, False, "capability tags beyond those the content implies", default=()),
        Field("pins", Str(), False, "the id of the vector whose rule this live-shaped vector checks"),
        Field("vm", VM, True, "the VM"),
        Field("slot", Array(SLOT), False, "memslots", default=()),
        Field("initial", INITIAL, False, "the state before the first step"),
        Field("step", Array(STEP, 1, "a vector needs at least one [[vector.step]]"), True, "operations, in order"),
    ),
)

DECISION_TABLE = Table(
    "table",
    (
        Field("id", ID, True, "unique in the file; a row's vector id is <path>::<id>/<row labels>"),
        Field("description", TEXT, True, "one line"),
        Field("profiles", PROFILES, True, "exactly one profile: the columns are its axes"),
        Field("flags", FLAG_NAMES, True, "flags of every row"),
        Field("op", Str(), True, "the operation (one of the profile's decision-space operations)"),
        Field("columns", Array(Str()), True, "the op's axes, its expectations, optionally flags"),
        Field(
            "rows",
            Array(Array(Anything('a value, "*" or {any = [...]}')), 1, "a table needs at least one row"),
            True,
            "one cell per column",
        ),
        Field("variants", Array(Str()), False, 'fixtures every row runs on again ("live")', default=()),
    ),
)

SUITE_FILE = Table(
    "suite file",
    (
        Field("suite", SUITE, True, "the file header"),
        Field("vector", Array(Anything("a [[vector]]")), False, "explicit vectors"),
        Field("table", Array(Anything("a [[table]]")), False, "decision tables"),
    ),
)


@dataclass(frozen=True)
class Published:
    """What jsonschema.py publishes: the whole-file shape with its parts."""

    title: str
    root: Table
    parts: dict[str, Type] = field(default_factory=dict)  # where SUITE_FILE says Anything: the real shape
    kind: str = "vector-file"  # the $id's name
    format: int = FORMAT  # the $id's version
    docs: str = "docs/vectors.md"  # where every key is described


FILE_DOCUMENT = Published("kvm-mmu-conformance vector file", SUITE_FILE, {"vector": VECTOR, "table": DECISION_TABLE})
REGISTRY_DOCUMENT = Published("kvm-mmu-conformance flag registry (flags.toml)", REGISTRY, kind="flag-registry")
