"""Vector -> TOML text in the suite format (docs/vectors.md), so that tools
(the fuzzer) can hand a person a ready file. `load.load_file` reads back
exactly what this writes; tests/test_dump.py holds it to that."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .model import (
    ERRNO_LABELS,
    Flag,
    Level,
    Mapping,
    Observables,
    Operation,
    Profile,
    Slot,
    Step,
    Vector,
    VmType,
    op_name,
)
from .schema import OP_PARAMS


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return hex(value) if value > 9 else str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if hasattr(value, "value"):  # enums
        return _value(value.value)
    if isinstance(value, (frozenset, set)):
        return _value(sorted(value, key=lambda v: getattr(v, "value", v)))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _mapping(m: Mapping, count: int = 1) -> str:
    parts = [
        f"root = {_value(m.root)}",
        f"gfn = {hex(m.gfn)}",
        f"level = {_value(m.level.label)}",
        f"kind = {_value(m.kind)}",
    ]
    parts += [f"as_id = {m.as_id}"] if m.as_id else []
    parts += ["invalid = true"] if m.invalid else []
    parts += [f"count = {_value(count)}"] if count > 1 else []
    return "  { " + ", ".join(parts) + " },"


def _runs(mappings: Iterable[Mapping]) -> list[tuple[Mapping, int]]:
    """Consecutive leaves of one tree, level and kind, as (first, count)."""
    runs: list[tuple[Mapping, int]] = []
    for m in sorted(mappings, key=lambda m: (m.as_id, m.root.value, m.invalid, m.level, m.kind.value, m.gfn)):
        if runs:
            first, count = runs[-1]
            same = (first.as_id, first.root, first.level, first.kind, first.invalid) == (
                m.as_id,
                m.root,
                m.level,
                m.kind,
                m.invalid,
            )
            if same and m.gfn == first.gfn + count * m.level.pages:
                runs[-1] = (first, count + 1)
                continue
        runs.append((m, 1))
    return runs


def _mappings(key: str, mappings: Iterable[Mapping]) -> list[str]:
    return [f"{key} = ["] + [_mapping(m, count) for m, count in _runs(mappings)] + ["]"]


def _slot(slot: Slot, profiles: frozenset[Profile]) -> list[str]:
    flags = (["LOG_DIRTY_PAGES"] if slot.log_dirty else []) + (["READONLY"] if slot.readonly else [])
    if slot.private:
        flags.append("PRIVATE" if profiles == {Profile.TDX_V10} else "GUEST_MEMFD")
    lines = [
        "[[vector.slot]]",
        f"id = {slot.id}",
        f"as_id = {slot.as_id}",
        f"base_gfn = {hex(slot.base_gfn)}",
        f"npages = {hex(slot.npages)}",
    ]
    lines += [f"flags = {_value(flags)}"] if flags else []
    lines += [f"gmem_flags = {_value(slot.gmem_flags)}"] if slot.gmem_flags else []
    return lines + [""]


def _op(op: Operation, profiles: frozenset[Profile]) -> list[str]:
    lines = ["[[vector.step]]", f"op = {_value(op_name(op))}"]
    for param in OP_PARAMS[op_name(op)]:
        value = getattr(op, param.key)
        if not profiles <= param.profiles or value is None or (value == param.default and not param.required):
            continue  # another profile's parameter, or unset with its default
        lines.append(f"{param.key} = {_value(value)}")
    return lines


def _expect(expect: Observables) -> list[str]:
    lines: list[str] = []
    if expect.mappings is not None:
        lines += _mappings("mappings", expect.mappings)
    if expect.flush is not None:
        lines.append(f"flush = {_value(expect.flush)}")
    if expect.decision is not None:
        lines.append(f"decision = {_value(expect.decision)}")
    if expect.warns is not None:
        lines.append(f"warns = {_value(expect.warns)}")
    if expect.errno is not None:
        lines.append(f"errno = {_value(ERRNO_LABELS.get(expect.errno, expect.errno))}")
    return ["", "[vector.step.expect]"] + lines if lines else []


def _step(step: Step, profiles: frozenset[Profile]) -> list[str]:
    return _op(step.op, profiles) + _expect(step.expect) + [""]


def vector_toml(vector: Vector, local_id: str | None = None, comment: Iterable[str] = ()) -> str:
    """One [[vector]] table; `requires` lists every tag (the loader adds the derived ones again)."""
    vm = vector.state.vm
    lines = [f"# {line}" for line in comment]
    lines += [
        "[[vector]]",
        f"id = {_value(local_id or vector.id.split('::')[-1])}",
        f"description = {_value(vector.description)}",
        f"profiles = {_value(sorted(p.value for p in vector.profiles))}",
        f"flags = {_value([f.name for f in vector.flags])}",
        f"requires = {_value(sorted(vector.requires))}",
        "",
        "[vector.vm]",
        f"type = {_value(vm.type)}",
        f"tdp_mmu = {_value(vm.tdp_mmu)}",
        f"rmaps = {_value(vm.rmaps)}",
    ]
    lines += [f"gpaw = {vm.gpaw}"] if vm.type is VmType.TDX else []
    lines += ["slot_zap_all = false"] if not vm.slot_zap_all else []
    lines.append("")
    for slot in vector.state.slots:
        lines += _slot(slot, vector.profiles)
    if vector.state.private_ranges or vector.state.mappings or vector.state.host_huge:
        lines.append("[vector.initial]")
        if vector.state.private_ranges:
            lines.append(f"private = {_value([list(r) for r in vector.state.private_ranges])}")
        if vector.state.host_huge:
            pages = [
                [lo, hi] + ([level.label] if level is not Level.L2M else []) for lo, hi, level in vector.state.host_huge
            ]
            lines.append(f"host_huge = {_value(pages)}")
        lines += _mappings("mappings", vector.state.mappings) if vector.state.mappings else []
        lines.append("")
    for step in vector.steps:
        lines += _step(step, vector.profiles)
    return "\n".join(lines)


def suite_toml(
    description: str, vectors: Iterable[tuple[Vector, str, tuple[str, ...]]], flags: Iterable[Flag] = ()
) -> str:
    """A whole suite file; `flags` are defined inline ([suite.flags]) for flags not in the registry."""
    lines = ["[suite]", "format = 1", f"description = {_value(description)}", ""]
    for flag in flags:
        lines += [
            f"[suite.flags.{flag.name}]",
            f"description = {_value(flag.description)}",
            f"bug_class = {_value(flag.bug_class)}",
            f"kernel = {_value(list(flag.kernel))}",
        ]
        lines += [f"links = {_value(list(flag.links))}"] if flag.links else []
        lines.append("")
    for vector, local_id, comment in vectors:
        lines.append(vector_toml(vector, local_id, comment))
    return "\n".join(lines).rstrip("\n") + "\n"
