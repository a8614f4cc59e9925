"""Decision tables: each [[table]] row becomes one Vector on a fixed fixture.

A row names the inputs of one call (VM, slot, range arguments, which
mappings are present) and the expected decision/flush/warns. The fixture
(slots, range, leaves) is the same for every row and is part of the spec
(docs/vectors.md); the expected mappings follow from the decision, with each
leaf's in/out-of-range label fixed by construction, never computed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Callable, Sequence

from .load import (
    FileCtx, Node, check_in_slot, check_keys, check_leaves, check_mapping, check_slot, check_slot_set, check_step,
    check_vm, get_bool, get_choice, get_enum, get_enum_list, get_flag_refs, get_id, get_list, get_profiles,
    get_str, get_strings, get_text, make_vector, v10_attr,
)
from .model import (
    V10_ATTR_NAMES, AttrFilter, Decision, Flag, Kind, Level, Mapping, Observables, Operation, Profile, RangeFlag,
    Root, Slot, State, Step, UnmapGfnRange, Vector, Vm, VmType, WarnSite, ZapGfnRange,
)

# ---------------------------------------------------------------- the fixture (part of the spec)

FIXTURE_SLOTS = ((1, 0x40000, 0x80000), (2, 0x100000, 0x400))  # (id, base_gfn, npages), all as_id 0
RANGE_START, RANGE_END = 0x40280, 0x80200  # [S, E): inside slot 1, straddling a 2M and a 1G leaf
# (memslot gfn, level, inside [S, E)) -- labels are by construction
SHARED_SET = (
    (0x40000, Level.L4K, False),
    (0x40200, Level.L2M, True),  # straddles S
    (0x40400, Level.L4K, True),
    (0x80000, Level.L1G, True),  # straddles E
    (0x100000, Level.L4K, False),  # slot 2
)
PRIVATE_SET = (
    (0x40001, Level.L4K, False),
    (0x40401, Level.L4K, True),
    (0x40600, Level.L2M, True),  # 4K when placed in a TDX mirror root
    (0x7FFFF, Level.L4K, True),
    (0x100001, Level.L4K, False),  # slot 2
)
FIXTURE_SETS = {Kind.SHARED: SHARED_SET, Kind.PRIVATE: PRIVATE_SET}
PRESENT = {"none": (), "shared": (Kind.SHARED,), "private": (Kind.PRIVATE,), "both": (Kind.SHARED, Kind.PRIVATE)}
TABLE_KEYS = ("id", "description", "profiles", "flags", "op", "columns", "rows")


def _unmap(row: dict[str, Any]) -> Operation:
    return UnmapGfnRange(
        slot=1, start=RANGE_START, end=RANGE_END, flush_in=row["flush_in"],
        range_flags=row.get("range_flags", frozenset()), attr=row.get("attr"),
        attr_filter=row.get("attr_filter", frozenset()),
    )


def _zap(row: dict[str, Any]) -> Operation:
    return ZapGfnRange(start=RANGE_START, end=RANGE_END)


# op name -> the fixture's single step built from a row's inputs; add ops here.
TABLE_OPS: dict[str, Callable[[dict[str, Any]], Operation]] = {
    "unmap_gfn_range": _unmap,
    "zap_gfn_range": _zap,
}

# ---------------------------------------------------------------- the column vocabulary

INPUT, EXPECT = "input", "expect"
ALL_OPS = frozenset(TABLE_OPS)
UNMAP = frozenset({"unmap_gfn_range"})
V10 = frozenset({Profile.TDX_V10})
MAINLINE = frozenset({Profile.MAINLINE})
ALL_PROFILES = frozenset(Profile)


def _show(value: Any) -> str:
    """Compact, stable rendering of an input value for row ids."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (frozenset, tuple)):
        return "+".join(sorted(_show(v) for v in value)) or "0"
    return "none" if value is None else str(value)


def _show_attr(value: Any) -> str:
    names = {number: name for name, number in V10_ATTR_NAMES.items()}
    return names.get(value) or _show(value)


def _attr_cell(node: Node) -> Any:
    return None if node.value == "none" else v10_attr(node)  # a cell cannot be omitted: "none" = no attr


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # INPUT or EXPECT
    parse: Callable[[Node], Any]
    ops: frozenset[str] = ALL_OPS
    profiles: frozenset[Profile] = ALL_PROFILES
    required: bool = True
    in_id: bool = True  # part of the row's identity (id, duplicate check)
    show: Callable[[Any], str] = _show

    def applies(self, op: str, profiles: frozenset[Profile]) -> bool:
        return op in self.ops and profiles <= self.profiles

    def render(self, value: Any) -> str:
        if isinstance(value, bool):
            return self.name if value else f"no_{self.name}"
        return self.show(value)


COLUMNS: tuple[Column, ...] = (
    Column("vm", INPUT, lambda n: get_enum(n, None, VmType)),
    Column("tdp_mmu", INPUT, get_bool),
    Column("rmaps", INPUT, get_bool),
    Column("slot_private", INPUT, get_bool),
    Column("range_flags", INPUT, lambda n: frozenset(get_enum_list(n, None, RangeFlag)), UNMAP, V10),
    Column("attr", INPUT, _attr_cell, UNMAP, V10, show=_show_attr),
    Column("attr_filter", INPUT, lambda n: frozenset(get_enum_list(n, None, AttrFilter)), UNMAP, MAINLINE),
    Column("flush_in", INPUT, get_bool, UNMAP),
    Column("present", INPUT, lambda n: get_choice(n, None, {name: name for name in PRESENT}, "present")),
    Column("flags", INPUT, lambda n: tuple(get_str(i) for i in get_list(n)), required=False, in_id=False),
    Column("decision", EXPECT, lambda n: get_enum(n, None, Decision)),
    Column("flush", EXPECT, get_bool),
    Column("warns", EXPECT, lambda n: frozenset(get_enum_list(n, None, WarnSite))),
)
COLUMN_BY_NAME = {column.name: column for column in COLUMNS}

# ---------------------------------------------------------------- fixture placement and expectations


def _tdp_leaf(vm: Vm, kind: Kind, gfn: int, level: Level) -> Mapping:
    if vm.mirror and kind is Kind.PRIVATE:
        return Mapping(0, Root.MIRROR, gfn, Level.L4K, kind)  # mirror leaves are 4K
    return Mapping(0, Root.DIRECT, gfn | vm.shared_bit, level, kind)  # shared_bit is 0 outside TDX


def place_fixture(vm: Vm, kinds: Sequence[Kind]) -> list[tuple[Mapping, bool]]:
    """The fixture leaves for the selected sets, each with its in-range label."""
    placed = []
    for kind in kinds:
        for gfn, level, inside in FIXTURE_SETS[kind]:
            if vm.tdp_mmu:
                placed.append((_tdp_leaf(vm, kind, gfn, level), inside))
            if vm.rmaps:
                placed.append((Mapping(0, Root.SHADOW, gfn, level, kind), inside))
    return placed


def root_hit(vm: Vm, root: Root, decision: Decision) -> bool:
    """Whether the call zaps in-range leaves of `root`: rmaps ignore the decision."""
    if root is Root.SHADOW:
        return True
    if vm.mirror:
        wanted = Decision.SHARED if root is Root.DIRECT else Decision.PRIVATE
        return decision in (wanted, Decision.BOTH)
    return decision is not Decision.NONE


def expected_after(vm: Vm, placed: Sequence[tuple[Mapping, bool]], decision: Decision) -> frozenset[Mapping]:
    return frozenset(m for m, inside in placed if not (inside and root_hit(vm, m.root, decision)))


# ---------------------------------------------------------------- parsing a table


def _columns(node: Node, op: str, profiles: frozenset[Profile]) -> list[Column]:
    for column in COLUMNS:
        split = op in column.ops and profiles & column.profiles and not profiles <= column.profiles
        if column.required and split:
            node.at("profiles").fail(f"column {column.name} is {_names(column.profiles)}-only; "
                                     f"a {op} table must list a single profile")
    names = get_strings(node, "columns")
    applicable = [c.name for c in COLUMNS if c.applies(op, profiles)]
    for i, name in enumerate(names):
        where = node.at("columns").at(i)
        if name not in COLUMN_BY_NAME:
            where.fail(f"unknown column {name!r}; allowed for {op}: {', '.join(applicable)}")
        if name not in applicable:
            where.fail(f"column {name!r} does not apply to {op} with profiles {_names(profiles)}; "
                       f"allowed: {', '.join(applicable)}")
        if name in names[:i]:
            where.fail(f"duplicate column {name!r}")
    for name in applicable:
        if COLUMN_BY_NAME[name].required and name not in names:
            node.at("columns").fail(f"missing column {name!r}")
    return [COLUMN_BY_NAME[name] for name in names]


def _names(profiles: frozenset[Profile]) -> str:
    return "+".join(sorted(p.value for p in profiles))


def _cells(row: Node, columns: Sequence[Column]) -> dict[str, Any]:
    cells = get_list(row)
    if len(cells) != len(columns):
        row.fail(f"has {len(cells)} cells but columns lists {len(columns)}")
    values = {}
    for column, cell in zip(columns, cells):
        # key path and message name the column; the line is the row's
        named = replace(cell, path=row.path + (column.name,), prefix=f"{row.prefix}column {column.name}: ")
        values[column.name] = column.parse(named)
    return values


def _row_id(columns: Sequence[Column], values: dict[str, Any]) -> str:
    """Inputs in vocabulary order, so reordering a table's columns keeps its ids."""
    present = {c.name for c in columns}
    return "-".join(c.render(values[c.name]) for c in COLUMNS if c.name in present and c.kind == INPUT and c.in_id)


@dataclass(frozen=True)
class _Table:
    file: FileCtx
    id: str
    description: str
    profiles: frozenset[Profile]
    flags: tuple[Flag, ...]
    op: str


def _row_flags(table: _Table, row: Node, values: dict[str, Any]) -> tuple[Flag, ...]:
    extra = values.get("flags", ())
    where = replace(row, value={"flags": list(extra)}, prefix=f"{row.prefix}column flags: ")
    return table.flags + tuple(f for f in get_flag_refs(where, "flags", table.file.flags, False) if f not in table.flags)


def _row_vector(table: _Table, row: Node, values: dict[str, Any], key: str) -> Vector:
    """Build the row's state and step, then apply the same checks as an explicit vector."""
    profiles = table.profiles
    vm = Vm(values["vm"], values["tdp_mmu"], values["rmaps"])
    check_vm(row, vm, profiles)
    slots = tuple(Slot(sid, base, npages, private=values["slot_private"]) for sid, base, npages in FIXTURE_SLOTS)
    for slot in slots:
        check_slot(row, slot, vm)
    check_slot_set([row] * len(slots), slots)
    placed = place_fixture(vm, PRESENT[values["present"]])
    initial = [m for m, _ in placed]
    for mapping in initial:
        check_mapping(row, mapping, vm, profiles)
        check_in_slot(row, mapping, vm, slots)
    check_leaves([row] * len(initial), initial)
    op = TABLE_OPS[table.op](values)
    expect = Observables(
        mappings=expected_after(vm, placed, values["decision"]), flush=values["flush"],
        decision=values["decision"], warns=values["warns"],
    )
    check_step(row, op, expect, vm, profiles, {s.id: s for s in slots})
    return make_vector(
        table.file, f"{table.id}::{key}", f"{table.description}: {key}", profiles, _row_flags(table, row, values),
        frozenset(), State(vm, slots, (), frozenset(initial)), (Step(op, expect, row.line),), row.line,
    )


def expand_table(node: Node, file: FileCtx) -> list[Vector]:
    """One [[table]] -> its row vectors, in row order."""
    check_keys(node, TABLE_KEYS, TABLE_KEYS)
    table_id = get_id(node)
    description = get_text(node, "description")
    profiles = get_profiles(node)
    flags = get_flag_refs(node, "flags", file.flags)
    op = get_choice(node, "op", {name: name for name in TABLE_OPS}, "table op")
    table = _Table(file, table_id, description, profiles, flags, op)
    columns = _columns(node, op, profiles)
    rows = get_list(node, "rows")
    if not rows:
        node.at("rows").fail("a table needs at least one row")
    seen: dict[str, int] = {}
    vectors = []
    for number, row in enumerate(rows):
        row = replace(row, prefix=f"table {table_id!r} row {number}: ")
        values = _cells(row, columns)
        key = _row_id(columns, values)
        if key in seen:
            row.fail(f"duplicate row: same inputs as row {seen[key]} ({table_id}::{key})")
        seen[key] = number
        vectors.append(_row_vector(table, row, values, key))
    return vectors
