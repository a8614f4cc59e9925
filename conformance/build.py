"""Assembly: one schema-checked [[vector]] table -> a model.Vector.

The schema has already vouched for every key's type and bounds, so values
are read directly; what is left is building model objects and running the
rules on them. Decision tables (tables.py) use `make_vector` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import capabilities, rules, schema
from .errors import KeyPath
from .flagreg import flag_refs
from .model import (
    OPERATIONS,
    Flag,
    Kind,
    Layer,
    Level,
    Mapping,
    Observables,
    Operation,
    Profile,
    Root,
    Slot,
    State,
    Step,
    Vector,
    Vm,
    VmType,
    op_layer,
    op_name,
)

EXPECT_LAYER = {"decision": Layer.CALL, "warns": Layer.CALL, "errno": Layer.EVENT}


@dataclass(frozen=True)
class FileCtx:
    """What every vector of one file shares."""

    path: str  # as messages show it
    name: str  # the file's path under its suite root, without .toml: the first part of its vector ids
    flags: dict[str, Flag]
    line: Callable[[KeyPath], int]  # a key path's line in the file


def make_vector(
    file: FileCtx,
    local_id: str,
    description: str,
    profiles: frozenset[Profile],
    flags: tuple[Flag, ...],
    requires: frozenset[str],
    state: State,
    steps: tuple[Step, ...],
    line: int,
) -> Vector:
    derived = capabilities.derive(
        state.vm, state.slots, state.mappings, (s.op for s in steps), state.private_ranges, state.host_huge
    )
    steps = tuple(share_initial_leaves(step, state.mappings) for step in steps)
    return Vector(
        id=f"{file.name}::{local_id}",
        description=description,
        profiles=profiles,
        requires=requires | derived,
        flags=flags,
        state=state,
        steps=steps,
        path=file.path,
        line=line,
    )


def share_initial_leaves(step: Step, initial: frozenset[Mapping]) -> Step:
    """STEP with every expected leaf that is also an initial leaf spelt by the initial state's own object.

    A backend that hands back the state's objects for the leaves that stay
    (the rust backend does) is then judged by identity: comparing the two
    sets never calls `Mapping.__eq__`, which for a million leaves costs more
    than the run (docs/benchmarks.md). Equal sets either way; the work is
    one lookup per initial leaf and one copy of the expected set in C.
    """
    expected = step.expect.mappings
    if not expected or not initial:
        return step
    common = frozenset(leaf for leaf in initial if leaf in expected)
    if not common:
        return step
    return replace(step, expect=replace(step.expect, mappings=(expected - common) | common))


def build_vector(value: Any, at: KeyPath, file: FileCtx) -> Vector:
    """Check one [[vector]] against the schema and the rules, and build it."""
    schema.check(value, schema.VECTOR, at)
    profiles = frozenset(schema.convert(value["profiles"], schema.PROFILES))
    flags = flag_refs(tuple(value["flags"]), file.flags, at + ("flags",))
    requires = tuple(value.get("requires", ()))
    for i, tag in enumerate(requires):
        rules.check_version_tag(tag, profiles, at + ("requires", i))
    vm = _vm(value["vm"])
    rules.check_vm(vm, profiles, at + ("vm",))
    slot_paths = [at + ("slot", i) for i in range(len(value.get("slot", ())))]
    slots = tuple(_slot(v) for v in value.get("slot", ()))
    for slot, path in zip(slots, slot_paths):
        rules.check_slot(slot, vm, profiles, path)
    rules.check_slot_set(slots, slot_paths)
    initial = value.get("initial", {})
    private = _ranges(initial, "private", vm, at + ("initial",))
    host_huge = _host_huge(initial, slots, at + ("initial",))
    mappings = _mappings(initial.get("mappings", []), vm, profiles, at + ("initial", "mappings"), slots)
    steps = _steps(value["step"], vm, profiles, slots, at, file)
    state = State(vm, slots, private, mappings, host_huge)
    vector = make_vector(
        file, value["id"], value["description"], profiles, flags, frozenset(requires), state, steps, file.line(at)
    )
    return replace(vector, pins=_pins(value["pins"], at + ("pins",))) if "pins" in value else vector


def _pins(target: str, at: KeyPath) -> str:
    """`pins = "<suite path>::<id>"`: the vector this one is a live variant
    of (checked against the whole suite by `conformance coverage --live`)."""
    name, sep, local = target.partition("::")
    parts = name.split("/") + local.split("/")
    if not sep or not all(schema._matches(schema.ID_PATTERN, p) for p in parts):
        schema.fail(at, f"bad vector id {target!r}: <suite path>::<id>, e.g. event/memslot::delete-one")
    return target


def _vm(value: dict[str, Any]) -> Vm:
    tdp_mmu = value["tdp_mmu"]
    return Vm(
        VmType(value["type"]),
        tdp_mmu,
        value.get("rmaps", not tdp_mmu),
        value.get("gpaw", 52),
        value.get("slot_zap_all", True),
    )


def _slot(value: dict[str, Any]) -> Slot:
    flags = set(value.get("flags", ()))
    return Slot(
        id=value["id"],
        base_gfn=value["base_gfn"],
        npages=value["npages"],
        as_id=value.get("as_id", 0),
        private=bool(flags & {"GUEST_MEMFD", "PRIVATE"}),
        log_dirty="LOG_DIRTY_PAGES" in flags,
        readonly="READONLY" in flags,
        gmem_flags=frozenset(schema.get(value, schema.SLOT.field("gmem_flags"), ())),
    )


def _ranges(initial: dict[str, Any], key: str, vm: Vm, at: KeyPath) -> tuple[tuple[int, int], ...]:
    ranges = [(start, end) for start, end in initial.get(key, ())]
    paths = [at + (key, i) for i in range(len(ranges))]
    rules.check_private_ranges(ranges, vm, paths)
    return tuple(sorted(ranges))


def _host_huge(initial: dict[str, Any], slots: tuple[Slot, ...], at: KeyPath) -> tuple[tuple[int, int, Level], ...]:
    pages = [
        (cells[0], cells[1], schema.HOST_PAGE.names[cells[2]] if len(cells) == 3 else Level.L2M)
        for cells in initial.get("host_huge", ())
    ]
    rules.check_host_huge(pages, slots, [at + ("host_huge", i) for i in range(len(pages))])
    return tuple(sorted(pages))


_LEVELS = schema.LEVELS
_ROOTS = {r.value: r for r in Root}
_KINDS = {k.value: k for k in Kind}


def _mapping(value: dict[str, Any], vm: Vm, at: KeyPath) -> Mapping:
    root = _ROOTS[value["root"]]
    kind = _KINDS[value["kind"]] if "kind" in value else rules.derive_kind(vm, root)
    if kind is None:
        schema.fail(
            at + ("kind",), f"kind required: a {root.value}-root leaf in a {vm.type.value} VM can be shared or private"
        )
    return Mapping(
        value.get("as_id", 0), root, value["gfn"], _LEVELS[value["level"]], kind, value.get("invalid", False)
    )


def _mappings(
    values: list[Any], vm: Vm, profiles: frozenset[Profile], at: KeyPath, slots: tuple[Slot, ...] | None = None
) -> frozenset[Mapping]:
    """A list of leaves (runs with `count`); with `slots` (the initial state)
    each must lie inside a slot."""
    paths = [at + (i,) for i in range(len(values))]
    runs = []
    leaves = rules.LeafChecker(vm, profiles)
    for value, path in zip(values, paths):
        first, count = _mapping(value, vm, path), value.get("count", 1)
        rules.check_run(first, count, vm, profiles, path, leaves)
        runs.append((first, count))
    if slots is not None:
        rules.check_in_slots(runs, vm, slots, paths)
    rules.check_leaves(runs, paths)
    singles = frozenset(first for first, count in runs if count == 1)
    big = [rules.run_leaves(first, count) for first, count in runs if count > 1]
    if not singles and len(big) == 1:
        return big[0]  # one split page: its (shared, immutable) set as is
    return singles.union(*big)


def _op(value: dict[str, Any], profiles: frozenset[Profile], at: KeyPath) -> Operation:
    name = value["op"]
    values = {}
    for param in schema.OP_PARAMS[name]:
        if not profiles <= param.profiles:
            only = rules.profile_names(param.profiles)
            if param.key in value:
                schema.fail(
                    at + (param.key,), f"{param.key} is {only}-only; this vector lists {rules.profile_names(profiles)}"
                )
            if param.required and profiles & param.profiles:
                schema.fail(
                    at + ("op",),
                    f"{name} needs {param.key} under {only} but other listed profiles do "
                    f"not accept it; split the vector per profile",
                )
            continue
        if param.key not in value and param.required:
            schema.fail(at + (param.key,), "missing required key")
        parsed = schema.get(value, param, at + (param.key,))
        values[param.key] = frozenset(parsed) if isinstance(param.default, frozenset) else parsed
    return OPERATIONS[name](**values)  # type: ignore[no-any-return]


def _expect(value: Any, op: Operation, vm: Vm, profiles: frozenset[Profile], at: KeyPath) -> Observables:
    if value is None:
        return Observables()
    layer = op_layer(op)
    for key, wanted in EXPECT_LAYER.items():
        if key in value and layer is not wanted:
            schema.fail(
                at + (key,),
                f"{key} is only observable for {wanted.value}-layer ops; {op_name(op)} is on the {layer.value} layer",
            )
    fields = schema.EXPECT.field
    warns = schema.get(value, fields("warns"), at)
    return Observables(
        mappings=_mappings(value["mappings"], vm, profiles, at + ("mappings",)) if "mappings" in value else None,
        flush=value.get("flush"),
        decision=schema.get(value, fields("decision"), at),
        warns=None if warns is None else frozenset(warns),
        errno=schema.get(value, fields("errno"), at),
    )


def _steps(
    values: list[Any], vm: Vm, profiles: frozenset[Profile], slots: tuple[Slot, ...], at: KeyPath, file: FileCtx
) -> tuple[Step, ...]:
    live = {slot.id: slot for slot in slots}
    steps = []
    for i, value in enumerate(values):
        path = at + ("step", i)
        op = _op(value, profiles, path)
        expect = _expect(value.get("expect"), op, vm, profiles, path + ("expect",))
        live = rules.check_step(op, expect, vm, profiles, live, path)
        steps.append(Step(op, expect, file.line(path)))
    return tuple(steps)
