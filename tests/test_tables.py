"""Decision tables expand into ordinary vectors on the standard fixture."""
from __future__ import annotations

from pathlib import Path

import pytest

from conformance import axes
from conformance.load import LoadError, load_file
from conformance.model import (
    MEMORY_ATTRIBUTE_PRIVATE, Decision, Kind, Level, Mapping, MemslotDelete, Profile, RangeFlag, Root,
    SetMemoryAttributes, Slot, UnmapGfnRange, Vm, VmType, WarnSite, ZapMemslot,
)
from conformance.tables import EXPECTS, PRIVATE_SET, SHARED_SET, TABLE_OPS

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
    return load_file(path).strict()


def _table(profile: str, op: str, columns: str, *rows: str, table_id: str = "t") -> str:
    body = ",\n  ".join(rows)
    return (f'[[table]]\nid = "{table_id}"\ndescription = "d"\nprofiles = ["{profile}"]\nflags = ["basic"]\n'
            f'op = "{op}"\ncolumns = [{columns}]\nrows = [\n  {body},\n]\n')


def _leaf(root: Root, gfn: int, level: Level, kind: Kind) -> Mapping:
    return Mapping(0, root, gfn, level, kind)


V10_COLUMNS = ('"vm", "tdp_mmu", "rmaps", "slot_private", "range_flags", "attr", "flush_in", "present", '
               '"decision", "scope", "flush", "warns", "flags"')


def test_tdx_row(tmp_path):
    body = _table("tdx-v10", "unmap_gfn_range", V10_COLUMNS,
                  '["TDX", true, false, true, ["SET_MEM_ATTR"], "PRIVATE", true, "both", "shared", "range", true, [], ["extra"]]',
                  '["TDX", true, false, true, ["SET_MEM_ATTR", "RESTRICTED_MEM"], 3, false, "private", "none", "range", false, [], []]')
    first, second = _suite(tmp_path, body).vectors
    assert first.id == "t::t/TDX-tdp_mmu-no_rmaps-slot_private-SET_MEM_ATTR-PRIVATE-flush_in-both"
    assert second.id == "t::t/TDX-tdp_mmu-no_rmaps-slot_private-RESTRICTED_MEM+SET_MEM_ATTR-invalid-no_flush_in-private"
    assert (first.line, first.steps[0].line, second.line) == (13, 13, 14)
    assert [f.name for f in first.flags] == ["basic", "extra"] and [f.name for f in second.flags] == ["basic"]
    assert first.row == (("op", "unmap_gfn_range"), ("vm", "TDX"), ("tdp_mmu", "true"), ("rmaps", "false"),
                         ("slot_private", "true"), ("range_flags", "SET_MEM_ATTR"), ("attr", "PRIVATE"),
                         ("flush_in", "true"), ("present", "both"))

    state = first.state
    assert state.vm == Vm(VmType.TDX, tdp_mmu=True, rmaps=False, gpaw=52)
    assert state.slots == (Slot(1, 0x40000, 0x80000, private=True), Slot(2, 0x100000, 0x400, private=True))
    assert state.private_ranges == ()
    direct = {_leaf(Root.DIRECT, l.gfn | SHARED_BIT, l.level, Kind.SHARED) for l in SHARED_SET}
    mirror = {_leaf(Root.MIRROR, l.gfn, Level.L4K, Kind.PRIVATE) for l in PRIVATE_SET}
    assert state.mappings == direct | mirror
    assert _leaf(Root.DIRECT, SHARED_BIT | 0x80000, Level.L1G, Kind.SHARED) in state.mappings  # alias bit
    assert _leaf(Root.MIRROR, 0x40600, Level.L4K, Kind.PRIVATE) in state.mappings  # 2M becomes 4K

    step = first.steps[0]
    assert step.op == UnmapGfnRange(slot=1, start=0x40280, end=0x80200, flush_in=True,
                                    range_flags=frozenset({RangeFlag.SET_MEM_ATTR}), attr=2)
    kept_direct = {_leaf(Root.DIRECT, g | SHARED_BIT, Level.L4K, Kind.SHARED) for g in (0x40000, 0x100000)}
    assert step.expect.mappings == kept_direct | mirror  # decision "shared": only the direct root is hit
    assert (step.expect.flush, step.expect.decision, step.expect.warns) == (True, Decision.SHARED, frozenset())
    assert step.expect.errno is None
    assert {"vm:TDX", "mmu:tdp", "huge:2M", "huge:1G", "private_slot", "layer:call"} <= first.requires

    assert second.steps[0].op.attr == 3  # the concrete value runs; its label is "invalid"
    assert second.steps[0].expect.mappings == mirror  # decision "none" keeps every TDP leaf


def test_wildcards_expand_to_reachable_combinations_only(tmp_path):
    body = _table("mainline", "zap_all", '"vm", "tdp_mmu", "rmaps", "present", "decision", "scope", "flush", "warns"',
                  '["*", "*", "*", {any = ["none", "private"]}, "both", "vm", false, []]')
    vectors = _suite(tmp_path, body).vectors
    labels = {(dict(v.row)["vm"], dict(v.row)["tdp_mmu"], dict(v.row)["rmaps"], dict(v.row)["present"])
              for v in vectors}
    # private mappings only in VMs with private memory; no shadow MMU without rmaps; TDX/SW_PROTECTED need TDP;
    # no TDX rmaps, and no nested rmaps beside the TDP MMU for SEV-ES/SNP
    assert ("DEFAULT", "true", "false", "private") not in labels
    assert ("DEFAULT", "false", "true", "none") in labels
    assert not any(vm == "TDX" and (tdp == "false" or rmaps == "true") for vm, tdp, rmaps, _ in labels)
    assert not any(vm == "SW_PROTECTED" and tdp == "false" for vm, tdp, _, _ in labels)
    assert not any(tdp == "false" and rmaps == "false" for _, tdp, rmaps, _ in labels)
    assert ("SNP", "true", "true", "private") not in labels and ("SNP", "false", "true", "private") in labels
    expected = sum(1 for combo, rule in axes.MAINLINE_SPACE.combinations("zap_all")
                   if rule is None and dict(combo)["present"] in ("none", "private"))
    assert len(vectors) == len(labels) == expected == 18
    assert all(v.line == 13 for v in vectors)


def test_scopes_pick_range_slot_or_everything(tmp_path):
    body = _table("tdx-v10", "zap_memslot",
                  '"vm", "tdp_mmu", "rmaps", "slot_private", "present", "decision", "scope", "rmap_scope", "flush", "warns"',
                  '["DEFAULT", true, true, false, "shared", "both", "slot", "none", true, []]')
    (vector,) = _suite(tmp_path, body).vectors
    assert vector.steps[0].op == ZapMemslot(1)
    direct = {l.gfn: l for l in SHARED_SET}
    kept = vector.steps[0].expect.mappings
    # the direct root loses every slot-1 leaf, in range or not; slot 2 stays; rmaps untouched
    assert {m.gfn for m in kept if m.root is Root.DIRECT} == {0x100000}
    assert {m.gfn for m in kept if m.root is Root.SHADOW} == set(direct)


def test_memslot_delete_scope_vm_and_quirk_state(tmp_path):
    body = _table("mainline", "memslot_delete",
                  '"vm", "tdp_mmu", "rmaps", "slot_zap_all", "present", "decision", "scope", "flush", "errno"',
                  '["DEFAULT", false, true, {any = [true, false]}, "shared", "both", "vm", true, "OK"]')
    on, off = sorted(_suite(tmp_path, body).vectors, key=lambda v: not v.state.vm.slot_zap_all)
    assert on.state.vm.slot_zap_all and not off.state.vm.slot_zap_all
    assert on.steps[0].op == MemslotDelete(1)
    assert on.steps[0].expect.mappings == frozenset()  # scope vm: slot 2 goes too
    assert on.steps[0].expect.decision is None and on.steps[0].expect.errno == 0  # events assert errno, not decision
    assert "quirk:SLOT_ZAP_ALL" in off.requires and "quirk:SLOT_ZAP_ALL" not in on.requires


def test_set_memory_attributes_row(tmp_path):
    body = _table("mainline", "set_memory_attributes",
                  '"vm", "tdp_mmu", "rmaps", "new_attributes", "current", "present", "decision", "scope", "flush", "errno"',
                  '["SNP", true, false, ["PRIVATE"], "mixed", "private", "both", "range", true, "OK"]',
                  '["SNP", true, false, "*", "private", "none", "none", "none", false, "EINVAL"]')
    vectors = _suite(tmp_path, body).vectors
    first = vectors[0]
    assert first.steps[0].op == SetMemoryAttributes(0x40280 * 4096, (0x80200 - 0x40280) * 4096, MEMORY_ATTRIBUTE_PRIVATE)
    assert first.state.private_ranges == ((0x40280, 0x40400),)
    assert all(s.private for s in first.state.slots)  # mainline: guest_memfd slots iff private memory
    assert {m.gfn for m in first.steps[0].expect.mappings} == {0x40001, 0x100001}
    invalid = [v for v in vectors[1:] if dict(v.row)["new_attributes"] == "invalid"]
    assert [v.steps[0].op.attributes for v in invalid] == [axes.UNKNOWN_ATTRIBUTE_BIT]
    assert len(vectors) == 4 and {v.state.private_ranges for v in vectors[1:]} == {((0x40280, 0x80200),)}


def test_two_rows_naming_one_combination_are_an_error(tmp_path):
    body = _table("tdx-v10", "unmap_gfn_range", V10_COLUMNS,
                  '["TDX", true, false, true, ["SET_MEM_ATTR"], 0, true, "both", "shared", "range", true, [], []]',
                  '["TDX", true, false, true, ["SET_MEM_ATTR"], "*", true, "both", "shared", "range", true, [], []]')
    with pytest.raises(LoadError, match="is also named by row 0") as info:
        _suite(tmp_path, body)
    assert info.value.key == "table[0].rows[1]"


def test_unreachable_concrete_row_names_the_rule(tmp_path):
    body = _table("mainline", "zap_all", '"vm", "tdp_mmu", "rmaps", "present", "decision", "scope", "flush", "warns"',
                  '["SEV", true, false, "private", "both", "vm", true, []]')
    with pytest.raises(LoadError) as info:
        _suite(tmp_path, body)
    assert info.value.key == "table[0].rows[0].present"
    assert "private mappings exist only in VMs with private memory" in info.value.message
    assert "kvm_arch_has_private_mem" in info.value.message


def test_columns_are_the_ops_axes():
    """The loader's input columns and the coverage space are one declaration."""
    for space in axes.SPACES.values():
        assert set(space.ops) <= set(TABLE_OPS)
        for op, op_axes in space.ops.items():
            names = [a.name for a in op_axes]
            assert len(names) == len(set(names)) and names[-1] == "present"
            assert not set(names) & {e.name for e in EXPECTS}


def test_every_unreachable_rule_removes_something_and_cites_the_kernel():
    for space in axes.SPACES.values():
        used = {rule for op in space.ops for _, rule in space.combinations(op) if rule is not None}
        assert used == set(space.unreachable), space.profile
        assert all(rule.reason and "(" in rule.kernel for rule in space.unreachable)


def test_explicit_vectors_obey_the_same_vm_rules(tmp_path):
    body = """\
[[vector]]
id = "v"
description = "d"
profiles = ["mainline"]
flags = ["basic"]
vm = { type = "SW_PROTECTED", tdp_mmu = false }

[[vector.step]]
op = "zap_all"
"""
    with pytest.raises(LoadError) as info:
        _suite(tmp_path, body)
    rule = axes.problem(Profile.MAINLINE, {"vm": "SW_PROTECTED", "tdp_mmu": "false", "rmaps": "true"})
    assert rule is not None and rule.reason in info.value.message and info.value.key == "vector[0].vm.tdp_mmu"


def test_profile_axes_differ():
    assert [a.values for a in axes.V10_SPACE.axes("zap_all") if a.name == "vm"] == [("DEFAULT", "TDX")]
    assert "slot_private" not in [a.name for a in axes.MAINLINE_SPACE.axes("zap_all")]
    assert Profile.MAINLINE in axes.SPACES and Profile.TDX_V10 in axes.SPACES
    assert WarnSite.KVM_UNMAP_GFN_RANGE.value == "kvm_unmap_gfn_range"


ML_EVENT_COLUMNS = '"vm", "tdp_mmu", "rmaps", "new_attributes", "current", "present", "decision", "scope", "flush", "errno"'


def _live_table(*rows: str) -> str:
    return _table("mainline", "set_memory_attributes", ML_EVENT_COLUMNS, *rows).replace(
        'op = "set_memory_attributes"', 'op = "set_memory_attributes"\nvariants = ["live"]')


def test_a_live_variant_pins_its_row_with_leaves_a_kernel_can_build(tmp_path):
    rows = _suite(tmp_path, _live_table(
        '["SW_PROTECTED", true, false, 0, "mixed", "both", "both", "range", true, "OK"]')).vectors
    standard, live = rows
    assert standard.pins == "" and live.pins == standard.id
    assert live.id == "t::t/live/SW_PROTECTED-tdp_mmu-no_rmaps-0-mixed-both" and live.row == standard.row
    assert "attribute-mismatch" in standard.requires and "huge:private" in standard.requires
    assert not {"attribute-mismatch", "huge:private", "huge:1G"} & live.requires
    # mixed: the head [S, 0x40400) is private; the private leaves outside [S, E) keep their own pages
    assert live.state.private_ranges == ((0x40001, 0x40002), (0x40280, 0x40400), (0x80201, 0x80202),
                                         (0x100001, 0x100002))
    leaves = {(m.gfn, m.level, m.kind) for m in live.state.mappings}
    assert (0x40300, Level.L4K, Kind.PRIVATE) in leaves  # the head leaf exists where the head is private
    assert (0x40200, Level.L2M, Kind.SHARED) not in leaves  # a 2M shared leaf over private pages cannot
    assert (0x40401, Level.L4K, Kind.PRIVATE) not in leaves  # private leaf on a shared page: dropped
    kept = {(m.gfn, m.kind) for m in live.steps[0].expect.mappings}
    assert kept == {(0x40000, Kind.SHARED), (0x80200, Kind.SHARED), (0x100000, Kind.SHARED),
                    (0x40001, Kind.PRIVATE), (0x80201, Kind.PRIVATE), (0x100001, Kind.PRIVATE)}
    assert live.steps[0].expect.flush is True


def test_a_live_variant_without_a_leaf_in_scope_does_not_flush(tmp_path):
    # to private over an all-shared range, private leaves present: the live fixture has none in range
    standard, live = _suite(tmp_path, _live_table(
        '["SW_PROTECTED", true, false, ["PRIVATE"], "shared", "private", "both", "range", true, "OK"]')).vectors
    assert standard.steps[0].expect.flush is True
    assert live.steps[0].expect.flush is False
    assert all(not (0x40280 <= m.gfn < 0x80200) for m in live.state.mappings)


def test_live_variants_are_for_event_tables_only(tmp_path):
    body = _table("mainline", "zap_all", '"vm", "tdp_mmu", "rmaps", "present", "decision", "scope", "flush", "warns"',
                  '["DEFAULT", true, false, "none", "both", "vm", false, []]').replace(
        'op = "zap_all"', 'op = "zap_all"\nvariants = ["live"]')
    with pytest.raises(LoadError, match=r"t\.toml:\d+: table\[0\]\.variants: the live fixture is for event operations"):
        _suite(tmp_path, body)
    with pytest.raises(LoadError, match=r"variants\[0\]: unknown variant 'dead'"):
        _suite(tmp_path, _live_table('["DEFAULT", true, false, 0, "shared", "none", "none", "none", false, "OK"]')
               .replace('variants = ["live"]', 'variants = ["dead"]'))
