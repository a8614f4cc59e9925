"""Decision tables: each [[table]] row becomes one Vector per combination
it names, on a fixed fixture.

A table has one profile and one operation; its input columns are exactly
that operation's axes (axes.py), so the coverage check and the loader read
the same declaration. A cell is a value, "*" (every reachable value of the
axis) or {any = [...]} (those values). The expected mappings follow from the
row's `decision` and `scope` with each fixture leaf's labels (in range,
which slot) fixed by construction, never computed by a backend.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from . import axes, capabilities, rules, schema
from .axes import Axis, Combination, Space
from .build import FileCtx, make_vector
from .errors import KeyPath, RuleViolation
from .flagreg import flag_refs
from .model import (
    CALL_OPS,
    OPERATIONS,
    PAGE_SIZE,
    Decision,
    Flag,
    Kind,
    Layer,
    Level,
    Mapping,
    MemslotDelete,
    MmuNotifierInvalidate,
    Observables,
    Operation,
    Profile,
    Root,
    SetMemoryAttributes,
    Slot,
    State,
    Step,
    UnmapGfnRange,
    Vector,
    Vm,
    VmType,
    WarnSite,
    ZapAll,
    ZapAllFast,
    ZapGfnRange,
    ZapMemslot,
    op_layer,
)

# ---------------------------------------------------------------- the fixture (part of the spec)

FIXTURE_SLOTS = ((1, 0x40000, 0x80000), (2, 0x100000, 0x400))  # (id, base_gfn, npages), all as_id 0
TABLE_SLOT = 1  # the slot every slot-directed operation names
RANGE_START, RANGE_END = 0x40280, 0x80200  # [S, E): inside slot 1, straddling a 2M and a 1G leaf
MIXED_PRIVATE = (RANGE_START, 0x40400)  # "current = mixed": the head of [S, E) is private


@dataclass(frozen=True)
class Leaf:
    """One fixture leaf in memslot GFNs; `slot` and `in_range` are labels by construction."""

    gfn: int
    level: Level
    slot: int
    in_range: bool


SHARED_SET: tuple[Leaf, ...] = (
    Leaf(0x40000, Level.L4K, 1, False),
    Leaf(0x40200, Level.L2M, 1, True),  # straddles S
    Leaf(0x40400, Level.L4K, 1, True),
    Leaf(0x80000, Level.L1G, 1, True),  # straddles E
    Leaf(0x100000, Level.L4K, 2, False),
)
PRIVATE_SET: tuple[Leaf, ...] = (
    Leaf(0x40001, Level.L4K, 1, False),
    Leaf(0x40401, Level.L4K, 1, True),
    Leaf(0x40600, Level.L2M, 1, True),  # 4K when placed in a TDX mirror root
    Leaf(0x7FFFF, Level.L4K, 1, True),
    Leaf(0x100001, Level.L4K, 2, False),
)
FIXTURE_SETS = {Kind.SHARED: SHARED_SET, Kind.PRIVATE: PRIVATE_SET}

# The live fixture: what a kernel can build, for the same rows. No 1G leaf
# (the 2M leaf at 0x80000 ends exactly at E, and a 4K one starts there), 4K
# private leaves only (guest_memfd has 4K folios), and every leaf's kind
# equal to its GFNs' attribute (a fault maps only that kind; a conversion
# zaps the other). The attributes follow the row (below).
LIVE_SHARED_SET: tuple[Leaf, ...] = (
    Leaf(0x40000, Level.L4K, 1, False),
    Leaf(0x40200, Level.L2M, 1, True),  # straddles S
    Leaf(0x40400, Level.L4K, 1, True),
    Leaf(0x80000, Level.L2M, 1, True),  # ends at E
    Leaf(0x80200, Level.L4K, 1, False),  # starts at E
    Leaf(0x100000, Level.L4K, 2, False),
)
LIVE_PRIVATE_SET: tuple[Leaf, ...] = (
    Leaf(0x40001, Level.L4K, 1, False),
    Leaf(0x40300, Level.L4K, 1, True),  # in the head [S, 0x40400): present only where the head is private
    Leaf(0x40401, Level.L4K, 1, True),
    Leaf(0x40600, Level.L4K, 1, True),
    Leaf(0x7FFFF, Level.L4K, 1, True),
    Leaf(0x80201, Level.L4K, 1, False),
    Leaf(0x100001, Level.L4K, 2, False),
)
LIVE_HEAD_LEAF = 0x40300
FIXTURES: dict[str, dict[Kind, tuple[Leaf, ...]]] = {
    "": FIXTURE_SETS,
    "live": {Kind.SHARED: LIVE_SHARED_SET, Kind.PRIVATE: LIVE_PRIVATE_SET},
}
VARIANTS = ("live",)  # what a table's `variants` key may name

PRESENT = {"none": (), "shared": (Kind.SHARED,), "private": (Kind.PRIVATE,), "both": (Kind.SHARED, Kind.PRIVATE)}
CURRENT = {"shared": (), "private": ((RANGE_START, RANGE_END),), "mixed": (MIXED_PRIVATE,)}
SCOPES = ("none", "range", "slot", "vm")


# ---------------------------------------------------------------- operations a table can name


def _set_attributes(values: dict[str, Any]) -> Operation:
    return SetMemoryAttributes(RANGE_START * PAGE_SIZE, (RANGE_END - RANGE_START) * PAGE_SIZE, values["new_attributes"])


# op name -> the fixture's single step built from a row's concrete inputs
TABLE_OPS: dict[str, Callable[[dict[str, Any]], Operation]] = {
    "unmap_gfn_range": lambda v: UnmapGfnRange(
        slot=TABLE_SLOT,
        start=RANGE_START,
        end=RANGE_END,
        flush_in=v["flush_in"],
        range_flags=v.get("range_flags", frozenset()),
        attr=v.get("attr"),
        attr_filter=v.get("attr_filter", frozenset()),
    ),
    "zap_gfn_range": lambda v: ZapGfnRange(RANGE_START, RANGE_END),
    "zap_memslot": lambda v: ZapMemslot(TABLE_SLOT),
    "zap_all_fast": lambda v: ZapAllFast(),
    "zap_all": lambda v: ZapAll(),
    "mmu_notifier_invalidate": lambda v: MmuNotifierInvalidate(0, RANGE_START, RANGE_END),
    "set_memory_attributes": _set_attributes,
    "memslot_delete": lambda v: MemslotDelete(TABLE_SLOT),
}

# ---------------------------------------------------------------- expectation columns


@dataclass(frozen=True)
class Expect:
    name: str
    type: schema.Type
    layers: frozenset[Layer] = frozenset(Layer)
    required: bool = True
    wrap: Callable[[Any], Any] = lambda value: value


_SCOPE = schema.Choice("scope", {s: s for s in SCOPES})
EXPECTS: tuple[Expect, ...] = (
    Expect("decision", schema.Choice("decision", schema.EXPECTABLE_DECISIONS)),
    Expect("scope", _SCOPE),
    Expect("rmap_scope", _SCOPE, required=False),  # where shadow leaves go, when it differs from scope
    Expect("flush", schema.Bool()),
    Expect("warns", schema.Array(schema.enum_choice(WarnSite), distinct=True), frozenset({Layer.CALL}), wrap=frozenset),
    Expect("errno", schema.ERRNO, frozenset({Layer.EVENT})),
)
EXPECT_BY_NAME = {e.name: e for e in EXPECTS}
FLAGS_COLUMN = "flags"
WILDCARD = "*"

# ---------------------------------------------------------------- fixture placement and expectations


def _tdp_leaf(vm: Vm, kind: Kind, leaf: Leaf) -> Mapping:
    if vm.mirror and kind is Kind.PRIVATE:
        return Mapping(0, Root.MIRROR, leaf.gfn, Level.L4K, kind)  # mirror leaves are 4K
    return Mapping(0, Root.DIRECT, leaf.gfn | vm.shared_bit, leaf.level, kind)  # shared_bit is 0 outside TDX


def place_fixture(vm: Vm, kinds: Sequence[Kind], variant: str = "") -> list[tuple[Mapping, Leaf]]:
    """The fixture leaves for the selected sets, each with its labels."""
    placed: list[tuple[Mapping, Leaf]] = []
    for kind in kinds:
        for leaf in FIXTURES[variant][kind]:
            if vm.tdp_mmu:
                placed.append((_tdp_leaf(vm, kind, leaf), leaf))
            if vm.rmaps:
                placed.append((Mapping(0, Root.SHADOW, leaf.gfn, leaf.level, kind), leaf))
    return placed


def in_scope(scope: str, leaf: Leaf) -> bool:
    return {"none": False, "range": leaf.in_range, "slot": leaf.slot == TABLE_SLOT, "vm": True}[scope]


def tdp_root_hit(vm: Vm, root: Root, decision: Decision) -> bool:
    """Whether the decision selects a TDP root: a TDX VM keeps kinds in
    separate roots; any other VM has one tree holding both."""
    if vm.mirror:
        wanted = Decision.SHARED if root is Root.DIRECT else Decision.PRIVATE
        return decision in (wanted, Decision.BOTH)
    return decision is not Decision.NONE


def zapped(vm: Vm, mapping: Mapping, leaf: Leaf, expect: dict[str, Any]) -> bool:
    if mapping.root is Root.SHADOW:  # rmaps know no kinds: only the scope applies
        return in_scope(expect.get("rmap_scope", expect["scope"]), leaf)
    return in_scope(expect["scope"], leaf) and tdp_root_hit(vm, mapping.root, expect["decision"])


# ---------------------------------------------------------------- parsing a table


def live_attributes(values: dict[str, Any], kinds: Sequence[Kind]) -> tuple[tuple[int, int], ...]:
    """The live fixture's private ranges: the row's `current` inside [S, E)
    and the private leaves outside it; without a `current` axis, every
    private leaf but the head one."""
    private = [leaf.gfn for leaf in LIVE_PRIVATE_SET if Kind.PRIVATE in kinds]
    if "current" in values:
        outside = [g for g in private if not RANGE_START <= g < RANGE_END]
        return tuple(sorted(CURRENT[values["current"]] + tuple((g, g + 1) for g in outside)))
    return tuple((g, g + 1) for g in private if g != LIVE_HEAD_LEAF)


@dataclass(frozen=True)
class _Table:
    file: FileCtx
    at: KeyPath
    id: str
    description: str
    profile: Profile
    flags: tuple[Flag, ...]
    op: str
    space: Space
    variants: tuple[str, ...] = ()


def _fail(at: KeyPath, message: str) -> NoReturn:
    raise RuleViolation(at, message)


def _profile(value: dict[str, Any], at: KeyPath) -> Profile:
    profiles = schema.convert(value["profiles"], schema.PROFILES)
    if len(profiles) != 1:
        _fail(at + ("profiles",), "a table lists exactly one profile: its columns are that profile's axes")
    return profiles[0]  # type: ignore[no-any-return]


def _columns(names: Sequence[str], table: _Table) -> tuple[list[Axis], list[Expect], bool]:
    """The table's columns: every axis of the op, its expectations, optionally flags."""
    at = table.at + ("columns",)
    op_axes = table.space.axes(table.op)
    layer = Layer.CALL if OPERATIONS[table.op] in CALL_OPS else Layer.EVENT
    expects = [e for e in EXPECTS if layer in e.layers]
    allowed = [a.name for a in op_axes] + [e.name for e in expects] + [FLAGS_COLUMN]
    for i, name in enumerate(names):
        if name not in allowed:
            _fail(
                at + (i,),
                f"unknown column {name!r}; allowed for {table.op} in {table.profile.value}: {', '.join(allowed)}",
            )
        if name in names[:i]:
            _fail(at + (i,), f"duplicate column {name!r}")
    required = [a.name for a in op_axes] + [e.name for e in expects if e.required]
    for name in required:
        if name not in names:
            _fail(at, f"missing column {name!r}")
    by_name = {a.name: a for a in op_axes}
    return (
        [by_name[n] for n in names if n in by_name],
        [EXPECT_BY_NAME[n] for n in names if n in EXPECT_BY_NAME],
        FLAGS_COLUMN in names,
    )


_ANY = schema.Table("any", (schema.Field("any", schema.Array(schema.Anything()), True),))


def _choices(axis: Axis, cell: Any, at: KeyPath) -> list[tuple[str, Any]]:
    """A cell's (label, concrete value) choices: "*", {any = [...]}, or one value."""
    if cell == WILDCARD:
        return [(label, axis.concrete(label)) for label in axis.values]
    if isinstance(cell, dict):
        schema.check(cell, _ANY, at)
        items = cell["any"]
        if len(items) < 2:
            _fail(at + ("any",), "list at least two values (or write the value itself)")
        choices = [
            (axis.label(value), value) for value in (axis.parse(item, at + ("any", i)) for i, item in enumerate(items))
        ]
        labels = [label for label, _ in choices]
        if len(set(labels)) != len(labels):
            _fail(at + ("any",), f"names a value twice: {', '.join(labels)}")
        return choices
    value = axis.parse(cell, at)
    return [(axis.label(value), value)]


def _row_id(axes_: Sequence[Axis], labels: dict[str, str]) -> str:
    """Labels in the op's axis order; booleans read as the axis name or no_<name>."""

    def show(axis: Axis) -> str:
        label = labels[axis.name]
        if axis.values == ("false", "true"):
            return axis.name if label == "true" else f"no_{axis.name}"
        return label

    return "-".join(show(a) for a in axes_)


@dataclass(frozen=True)
class _Row:
    at: KeyPath
    number: int
    expect: dict[str, Any]
    flags: tuple[Flag, ...]


def _expansions(
    table: _Table, row: _Row, cells: dict[str, list[tuple[str, Any]]]
) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """Every reachable combination the row names; a row naming none is an error."""
    op_axes = table.space.axes(table.op)
    names = [a.name for a in op_axes]
    first_rule, reachable = None, 0
    for picks in itertools.product(*(cells[n] for n in names)):
        labels = {n: label for n, (label, _) in zip(names, picks)}
        rule = table.space.blocked_by(labels)
        if rule is not None:
            first_rule = first_rule or rule
            continue
        reachable += 1
        yield labels, {n: value for n, (_, value) in zip(names, picks)}
    if not reachable and first_rule is not None:
        _fail(
            row.at + (first_rule.axes[-1],),
            f"names only combinations that cannot happen: {first_rule.reason} [{first_rule.kernel}]",
        )


def _state(table: _Table, values: dict[str, Any], variant: str) -> tuple[State, list[tuple[Mapping, Leaf]]]:
    vm = Vm(VmType(values["vm"]), values["tdp_mmu"], values["rmaps"], slot_zap_all=values.get("slot_zap_all", True))
    private = values.get("slot_private", vm.private_mem)  # mainline: guest_memfd slots iff private memory
    slots = tuple(Slot(sid, base, npages, private=private) for sid, base, npages in FIXTURE_SLOTS)
    kinds = PRESENT[values["present"]]
    placed = place_fixture(vm, kinds, variant)
    if variant == "live":
        ranges = live_attributes(values, kinds) if vm.private_mem else ()
        placed = [(m, leaf) for m, leaf in placed if not capabilities.mismatched(vm, m, ranges)]
    else:
        ranges = CURRENT[values["current"]] if "current" in values else ()
    return State(vm, slots, ranges, frozenset(m for m, _ in placed)), placed


@functools.lru_cache(maxsize=1024)
def _state_problem(state: State, profiles: frozenset[Profile]) -> RuleViolation | None:
    """Rows of many tables share a handful of fixture states: each is judged once."""
    try:
        rules.check_state(state, profiles, ())
    except RuleViolation as violation:
        return violation
    return None


def _check_fixture_state(state: State, profiles: frozenset[Profile], at: KeyPath) -> None:
    problem = _state_problem(state, profiles)
    if problem is not None:  # reported at the row, as check_state(state, profiles, at) would
        raise RuleViolation(at + problem.path, problem.message)


def row_id(table_id: str, key: str, variant: str = "") -> str:
    """A row's local id, the one spelling node ids, results and expectation
    patterns share: <table>/<row labels>, or <table>/<variant>/<row labels>."""
    return f"{table_id}/{variant}/{key}" if variant else f"{table_id}/{key}"


def _row_vector(table: _Table, row: _Row, labels: dict[str, str], values: dict[str, Any], variant: str = "") -> Vector:
    """Build one combination's state and step; apply the checks an explicit vector gets."""
    profiles = frozenset({table.profile})
    state, placed = _state(table, values, variant)
    _check_fixture_state(state, profiles, row.at)
    op = TABLE_OPS[table.op](values)
    call = op_layer(op) is Layer.CALL
    gone = [m for m, leaf in placed if zapped(state.vm, m, leaf, row.expect)]
    flush = row.expect["flush"]
    if variant:
        flush = _variant_flush(table, row, values, bool(gone))
    expect = Observables(
        mappings=frozenset(m for m, _ in placed) - frozenset(gone),
        flush=flush,
        decision=row.expect["decision"] if call else None,
        warns=row.expect.get("warns"),
        errno=row.expect.get("errno"),
    )
    rules.check_step(op, expect, state.vm, profiles, {s.id: s for s in state.slots}, row.at)
    key = _row_id(table.space.axes(table.op), labels)
    description = f"{table.description}: {key}" + (f" ({variant} fixture)" if variant else "")
    line = table.file.line(row.at)
    vector = make_vector(
        table.file,
        row_id(table.id, key, variant),
        description,
        profiles,
        row.flags,
        frozenset(),
        state,
        (Step(op, expect, line),),
        line,
    )
    pins = f"{table.file.name}::{row_id(table.id, key)}" if variant else ""
    return replace(vector, row=axes.combination(table.op, table.space.axes(table.op), labels), pins=pins)


def _variant_flush(table: _Table, row: _Row, values: dict[str, Any], zaps: bool) -> bool:
    """A variant holds fewer leaves than the standard fixture, so its event
    flushes iff the row's does and the variant still zaps a leaf. That holds
    only for rows whose flush comes from zapped leaves; a row that flushes
    on the standard fixture without zapping one is refused."""
    if not row.expect["flush"]:
        return False
    state, standard = _state(table, values, "")
    if not any(zapped(state.vm, m, leaf, row.expect) for m, leaf in standard):
        _fail(row.at, "flushes without zapping a fixture leaf, so a fixture variant cannot tell its flush")
    return zaps


def _row_flags(table: _Table, cell: Any, at: KeyPath) -> tuple[Flag, ...]:
    schema.check(cell, schema.Array(schema.Str()), at)
    extra = flag_refs(tuple(cell), table.file.flags, at)
    return table.flags + tuple(f for f in extra if f not in table.flags)


def _axis_cell(axis: Axis, value: Any, at: KeyPath) -> list[tuple[str, Any]]:
    return _choices(axis, value, at)


def _expect_cell(expect: Expect, value: Any, at: KeyPath) -> Any:
    return expect.wrap(schema.parse(value, expect.type, at))


def _parse_row(
    table: _Table,
    cells: list[Any],
    at: KeyPath,
    number: int,
    columns: tuple[list[Axis], list[Expect], bool],
    names: Sequence[str],
) -> tuple[_Row, dict[str, list[tuple[str, Any]]]]:
    input_axes, expects, has_flags = columns
    if len(cells) != len(names):
        _fail(at, f"has {len(cells)} cells but columns lists {len(names)}")
    by_name = dict(zip(names, cells))

    def named(column: str, parse: Callable[[Any, KeyPath], Any]) -> Any:
        """A cell's key path names its column; its line is the row's."""
        try:
            return parse(by_name[column], at + (column,))
        except RuleViolation as err:
            raise RuleViolation(err.path, f"column {column}: {err.message}", err.other) from None

    choices = {axis.name: named(axis.name, functools.partial(_axis_cell, axis)) for axis in input_axes}
    expect = {e.name: named(e.name, functools.partial(_expect_cell, e)) for e in expects}
    flags = named(FLAGS_COLUMN, lambda v, p: _row_flags(table, v, p)) if has_flags else table.flags
    return _Row(at, number, expect, flags), choices


def expand_table(value: Any, at: KeyPath, file: FileCtx) -> list[Vector]:
    """One [[table]] -> its row vectors, in row order."""
    schema.check(value, schema.DECISION_TABLE, at)
    profile = _profile(value, at)
    flags = flag_refs(tuple(value["flags"]), file.flags, at + ("flags",))
    space = axes.SPACES[profile]
    op = schema.parse(value["op"], schema.Choice(f"{profile.value} table op", {n: n for n in space.ops}), at + ("op",))
    variants = _variants(value, op, at)
    table = _Table(file, at, value["id"], value["description"], profile, flags, op, space, variants)
    names = value["columns"]
    columns = _columns(names, table)
    seen: dict[Combination, int] = {}
    vectors = []
    for number, cells in enumerate(value["rows"]):
        row_at = at + ("rows", number)
        try:
            row, choices = _parse_row(table, cells, row_at, number, columns, names)
            for labels, values in _expansions(table, row, choices):
                combo = axes.combination(op, space.axes(op), labels)
                if combo in seen:
                    _fail(
                        row_at, f"duplicate row: {_row_id(space.axes(op), labels)} is also named by row {seen[combo]}"
                    )
                seen[combo] = number
                vectors.append(_row_vector(table, row, labels, values))
                vectors.extend(_row_vector(table, row, labels, values, variant) for variant in table.variants)
        except RuleViolation as err:  # say which row, whatever rule it broke
            raise RuleViolation(err.path, f"table {table.id!r} row {number}: {err.message}", err.other) from None
    return vectors


def _variants(value: dict[str, Any], op: str, at: KeyPath) -> tuple[str, ...]:
    """`variants = ["live"]`: every row again on the live fixture (event ops only)."""
    names = value.get("variants", [])
    for i, name in enumerate(names):
        if name not in VARIANTS:
            _fail(at + ("variants", i), f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    if names and OPERATIONS[op] in CALL_OPS:
        _fail(at + ("variants",), "the live fixture is for event operations; call-layer rows need no live variant")
    return tuple(dict.fromkeys(names))
