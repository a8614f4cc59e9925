"""Decision tables expand into ordinary vectors on the standard fixture."""
from __future__ import annotations

from pathlib import Path

import pytest

from conformance.load import LoadError, load_file
from conformance.model import (
    AttrFilter, Decision, Kind, Level, Mapping, Profile, RangeFlag, Root, Slot, UnmapGfnRange, Vm, VmType,
    WarnSite, ZapGfnRange,
)
from conformance.tables import COLUMNS, PRIVATE_SET, SHARED_SET

SHARED_BIT = 1 << 39  # gpaw 52
FLAGS = """\
[flags.basic]
description = "Baseline"
bug_class = "basic"
kernel = ["kvm_unmap_gfn_range"]

[flags.extra]
description = "An extra per-row flag"
bug_class = "edge-case"
kernel = []
"""
HEADER = '[suite]\nformat = 1\ndescription = "tables"\n\n'


def _suite(tmp_path: Path, body: str, name: str = "t.toml"):
    (tmp_path / "flags.toml").write_text(FLAGS)
    path = tmp_path / name
    path.write_text(HEADER + body)
    return load_file(path)


def _leaf(root: Root, gfn: int, level: Level, kind: Kind) -> Mapping:
    return Mapping(0, root, gfn, level, kind)


V10_TABLE = """\
[[table]]
id = "v10"
description = "v10 unmap"
profiles = ["tdx-v10"]
flags = ["basic"]
op = "unmap_gfn_range"
columns = ["vm", "tdp_mmu", "rmaps", "slot_private", "range_flags", "attr", "flush_in", "present",
           "decision", "flush", "warns", "flags"]
rows = [
  ["TDX", true, false, true, ["SET_MEM_ATTR"], "PRIVATE", true, "both", "shared", true, [], ["extra"]],
  ["TDX", true, false, true, ["SET_MEM_ATTR", "RESTRICTED_MEM"], 3, false, "private", "none", false, ["kvm_unmap_gfn_range"], []],
]
"""


def test_tdx_row(tmp_path):
    first, second = _suite(tmp_path, V10_TABLE).vectors
    assert first.id == "t::v10::TDX-tdp_mmu-no_rmaps-slot_private-SET_MEM_ATTR-PRIVATE-flush_in-both"
    assert second.id == "t::v10::TDX-tdp_mmu-no_rmaps-slot_private-RESTRICTED_MEM+SET_MEM_ATTR-0x3-no_flush_in-private"
    assert first.description == "v10 unmap: TDX-tdp_mmu-no_rmaps-slot_private-SET_MEM_ATTR-PRIVATE-flush_in-both"
    assert (first.line, first.steps[0].line, second.line) == (14, 14, 15)
    assert [f.name for f in first.flags] == ["basic", "extra"] and [f.name for f in second.flags] == ["basic"]
    assert first.profiles == {Profile.TDX_V10}

    state = first.state
    assert state.vm == Vm(VmType.TDX, tdp_mmu=True, rmaps=False, gpaw=52)
    assert state.slots == (Slot(1, 0x40000, 0x80000, private=True), Slot(2, 0x100000, 0x400, private=True))
    assert state.private_ranges == ()
    direct = {_leaf(Root.DIRECT, g | SHARED_BIT, lvl, Kind.SHARED) for g, lvl, _ in SHARED_SET}
    mirror = {_leaf(Root.MIRROR, g, Level.L4K, Kind.PRIVATE) for g, _, _ in PRIVATE_SET}
    assert state.mappings == direct | mirror
    assert _leaf(Root.DIRECT, SHARED_BIT | 0x80000, Level.L1G, Kind.SHARED) in state.mappings  # alias bit
    assert _leaf(Root.MIRROR, 0x40600, Level.L4K, Kind.PRIVATE) in state.mappings  # 2M becomes 4K

    step = first.steps[0]
    assert step.op == UnmapGfnRange(slot=1, start=0x40280, end=0x80200, flush_in=True,
                                    range_flags=frozenset({RangeFlag.SET_MEM_ATTR}), attr=2)
    kept_direct = {_leaf(Root.DIRECT, g | SHARED_BIT, Level.L4K, Kind.SHARED) for g in (0x40000, 0x100000)}
    assert step.expect.mappings == kept_direct | mirror  # decision "shared": only the direct root is hit
    assert (step.expect.flush, step.expect.decision, step.expect.warns) == (True, Decision.SHARED, frozenset())
    assert {"vm:TDX", "mmu:tdp", "huge:2M", "huge:1G", "private_slot", "layer:call"} <= first.requires

    assert second.state.mappings == mirror
    assert second.steps[0].op.attr == 3
    assert second.steps[0].expect.mappings == mirror  # decision "none" keeps everything
    assert second.steps[0].expect.warns == {WarnSite.KVM_UNMAP_GFN_RANGE}


MAINLINE_TABLE = """\
[[table]]
id = "ml"
description = "mainline unmap with nested rmaps"
profiles = ["mainline"]
flags = ["basic"]
op = "unmap_gfn_range"
columns = ["warns", "flush", "decision", "present", "flush_in", "attr_filter", "slot_private", "rmaps", "tdp_mmu",
           "vm"]
rows = [
  [[], true, "private", "both", false, ["PRIVATE"], true, true, true, "SW_PROTECTED"],
  [[], true, "none", "shared", false, [], true, true, true, "SW_PROTECTED"],
]
"""


def test_non_tdx_row_with_rmaps(tmp_path):
    first, second = _suite(tmp_path, MAINLINE_TABLE).vectors
    # ids follow the vocabulary order, not the table's column order
    assert first.id == "t::ml::SW_PROTECTED-tdp_mmu-rmaps-slot_private-PRIVATE-no_flush_in-both"
    assert second.id == "t::ml::SW_PROTECTED-tdp_mmu-rmaps-slot_private-0-no_flush_in-shared"
    assert first.state.vm == Vm(VmType.SW_PROTECTED, tdp_mmu=True, rmaps=True)
    sets = ((SHARED_SET, Kind.SHARED), (PRIVATE_SET, Kind.PRIVATE))
    placed = {(root, g, lvl, kind, inside)
              for root in (Root.DIRECT, Root.SHADOW) for fixture, kind in sets for g, lvl, inside in fixture}
    assert first.state.mappings == {_leaf(r, g, lvl, k) for r, g, lvl, k, _ in placed}
    assert _leaf(Root.SHADOW, 0x40600, Level.L2M, Kind.PRIVATE) in first.state.mappings  # memslot gfn, still 2M
    assert first.steps[0].op == UnmapGfnRange(slot=1, start=0x40280, end=0x80200,
                                              attr_filter=frozenset({AttrFilter.PRIVATE}))
    # non-TDX: the direct root is hit for any decision but none; shadow always
    assert first.steps[0].expect.mappings == {_leaf(r, g, lvl, k) for r, g, lvl, k, inside in placed if not inside}
    assert second.steps[0].expect.mappings == {
        _leaf(r, g, lvl, k) for r, g, lvl, k, inside in placed
        if k is Kind.SHARED and (r is Root.DIRECT or not inside)
    }
    assert "rmaps:nested" in first.requires


def test_zap_gfn_range_table(tmp_path):
    body = """\
[[table]]
id = "zap"
description = "memory type zap"
profiles = ["mainline", "tdx-v10"]
flags = ["basic"]
op = "zap_gfn_range"
columns = ["vm", "tdp_mmu", "rmaps", "slot_private", "present", "decision", "flush", "warns"]
rows = [["DEFAULT", false, true, false, "shared", "both", true, []]]
"""
    (vector,) = _suite(tmp_path, body).vectors
    assert vector.id == "t::zap::DEFAULT-no_tdp_mmu-rmaps-no_slot_private-shared"
    assert vector.steps[0].op == ZapGfnRange(0x40280, 0x80200)
    assert vector.state.mappings == {_leaf(Root.SHADOW, g, lvl, Kind.SHARED) for g, lvl, _ in SHARED_SET}
    assert vector.steps[0].expect.mappings == {
        _leaf(Root.SHADOW, g, lvl, Kind.SHARED) for g, lvl, inside in SHARED_SET if not inside}


def test_attr_name_and_number_are_the_same_input(tmp_path):
    body = V10_TABLE.replace('"PRIVATE", true, "both"', '2, true, "both"').replace(
        '["SET_MEM_ATTR", "RESTRICTED_MEM"], 3', '["SET_MEM_ATTR"], "PRIVATE"').replace(
        'false, "private", "none"', 'true, "both", "none"')
    with pytest.raises(LoadError, match="duplicate row: same inputs as row 0"):
        _suite(tmp_path, body)


def test_unmap_table_needs_one_profile(tmp_path):
    body = V10_TABLE.replace('profiles = ["tdx-v10"]', 'profiles = ["tdx-v10", "mainline"]')
    with pytest.raises(LoadError, match="must list a single profile") as info:
        _suite(tmp_path, body)
    assert info.value.key == "table[0].profiles"


def test_explicit_private_kind_is_kept_in_a_vm_without_private_memory(tmp_path):
    body = MAINLINE_TABLE.replace('"SW_PROTECTED"]', '"DEFAULT"]')
    first = _suite(tmp_path, body).vectors[0]
    assert _leaf(Root.DIRECT, 0x40401, Level.L4K, Kind.PRIVATE) in first.state.mappings


def test_row_failing_vector_rules_names_table_row_and_line(tmp_path):
    body = MAINLINE_TABLE.replace('true, true, true, "SW_PROTECTED"]', 'true, true, false, "SW_PROTECTED"]', 1)
    with pytest.raises(LoadError) as info:
        _suite(tmp_path, body)
    err = info.value
    assert (err.line, err.key) == (14, "table[0].rows[0].tdp_mmu")  # row 0, after the 4-line [suite] header
    assert err.message == "table 'ml' row 0: SW_PROTECTED VMs require tdp_mmu = true"


def test_column_vocabulary_is_declared_once():
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    assert {c.kind for c in COLUMNS} == {"input", "expect"}
    assert {c.name for c in COLUMNS if c.kind == "expect"} == {"decision", "flush", "warns"}
